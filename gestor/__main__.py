"""`python -m gestor` is the `gestor` command."""

from gestor.cli import main

raise SystemExit(main())
