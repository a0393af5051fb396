"""Whether the user asked to stop (Ctrl-C, SIGTERM): a flag the CLI's signal handler sets and
the training loop reads. The handler also raises KeyboardInterrupt at once; the flag is what
makes the request stick where a library swallows that exception (Keras builds its metrics
inside bare `except:` blocks on the first step)."""

from __future__ import annotations

import threading

requested = threading.Event()


def caused(error: BaseException) -> bool:
    """Whether error is the user's interruption: a KeyboardInterrupt, or whatever a library made
    of one once a signal came (TensorFlow raises TypeError from a KeyboardInterrupt that lands
    while it traces)."""
    return isinstance(error, KeyboardInterrupt) or requested.is_set()
