"""`python -m dmod.services.worker run --job jobs/<id>`: the worker agent (see agent/)."""
import sys

from dmod.services.worker.agent.cli import main

sys.exit(main())
