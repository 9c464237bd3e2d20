"""``python -m bandguard`` runs the command line tool."""

from bandguard.cli import main

raise SystemExit(main())
