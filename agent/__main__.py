"""``python -m agent``: the same as the ``edge-agent`` console script."""

from agent.cli import main

main()
