import sys

try:
    # Stop signals are taken over first, before the rest of serstream is even imported
    # (which takes a while): a service manager's SIGTERM at any moment of start-up is
    # then a clean exit 0, never a traceback or a kill (see serstream.stopping).
    from serstream.stopping import Stopper

    stopper = Stopper()
    stopper.install()
except KeyboardInterrupt:  # Ctrl-C in the few milliseconds before that: no traceback
    sys.exit(130)

from serstream.cli import main  # noqa: E402 - after the stop signals are in hand

sys.exit(main(stopper=stopper))
