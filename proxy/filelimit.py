"""The process's open-file limit: raised to its hard ceiling at start.

Every client connection, and every upstream connection behind it, is a file descriptor.
Many systems start processes with a soft limit of 1,024 while allowing far more (the
hard limit), which would cap a proxy at a few hundred concurrent requests.  Like Go's
runtime and nginx's ``worker_rlimit_nofile``, ``mwm run`` raises the soft limit to the
hard one before it listens; worker processes inherit it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # a ceiling the kernel will not grant (nr_open)
        log.warning(
            "cannot raise the open-file limit",
            extra={"soft": soft, "hard": hard, "error": str(exc)},
        )
        return soft
    log.debug("open-file limit raised", extra={"from": soft, "to": target})
    return target
