"""sendgrid-operator: export customer segments into SendGrid Marketing contact lists.

The package is split by boundary: ``emulator`` stands in for SendGrid, ``sendgrid``
is the one HTTP client that talks to it (or to the real service), ``engine`` runs one
export from source to verified list membership, and ``controller`` reconciles the
custom resources in a cluster. ``cli`` ties them to the ``sendgrid-operator`` command.
"""

__version__ = "0.1.0"
