"""``python -m flowdeck`` is the same as the ``flowdeck`` command."""

from flowdeck.cli import main

if __name__ == "__main__":
    main()
