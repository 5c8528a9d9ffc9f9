"""Allow ``python -m sendgrid_operator``."""

from sendgrid_operator.cli import main

raise SystemExit(main())
