"""python -m tests.fake_stripe --port N --webhook-url URL --webhook-secret S [--webhook-secret S2]

Prints `FAKE_STRIPE_READY http://127.0.0.1:PORT` once it listens (port 0 picks a free port) and
serves until terminated."""

from __future__ import annotations

import argparse

from tests.fake_stripe.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_stripe", description="A fake Stripe API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret", action="append", default=[],
                        help="repeat to sign with several secrets (rotation)")
    parser.add_argument("--api-events", choices=["queue", "async"], default="queue",
                        help="events caused by API calls: queued until released, or sent at once")
    args = parser.parse_args()
    try:
        serve(args.host, args.port, args.webhook_url, args.webhook_secret, args.api_events)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
