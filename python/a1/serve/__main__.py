"""python -m a1.serve --model M [--draft D] [--host H] [--port P]"""
from .cli import main

raise SystemExit(main())
