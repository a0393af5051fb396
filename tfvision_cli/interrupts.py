"""Whether the user asked to stop (Ctrl-C, SIGTERM): a flag the CLI's signal handler sets and
the training loop reads. The handler also raises KeyboardInterrupt at once; the flag is what
makes the request stick where a library swallows that exception (Keras builds its metrics
inside bare `except:` blocks on the first step)."""

from __future__ import annotations

import threading

requested = threading.Event()
