"""Exit codes of ``sendgrid-operator export`` and of the export Job's container.

The contract between the engine, the local command and the operator (whose Jobs fail at
once on the deterministic codes), kept free of imports so the operator need not load the
engine to read it.
"""

EXIT_OK = 0
"""SendGrid applied the run (or the dry run completed)."""
EXIT_UNEXPECTED = 1
"""A bug or an unforeseen failure."""
EXIT_BAD_INPUT = 2
"""Bad manifests, mapping or source: fix the input."""
EXIT_REFUSED = 3
"""A safety guard refused the run before any write (maxProfiles, removals, empty, consent)."""
EXIT_SENDGRID = 4
"""SendGrid failed the run: key, scope, unknown list, failed jobs, unreachable."""
