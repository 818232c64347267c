"""python -m xpnet  ->  the xpnet command line."""
from xpnet.cli import main

raise SystemExit(main())
