"""Keep pynetdicom's log value-free.

pynetdicom logs at INFO and DEBUG what it sends and receives (identifiers, UIDs of received
instances: original, identifying values), and logs the text and traceback of exceptions raised
while decoding what a peer sent (which may quote it). The node keeps pynetdicom at WARNING and
passes its records through :class:`ValueFree`, which drops tracebacks and the text of exception
records, keeping only their type. It also turns off pynetdicom's identifier dumps
(``_config.LOG_REQUEST_IDENTIFIERS`` and ``LOG_RESPONSE_IDENTIFIERS``, its documented
switches): they format every C-FIND/C-GET/C-MOVE identifier line by line before the logger
drops the lines, on every request and every pending response; and its standard event
handlers (``_config.LOG_HANDLER_LEVEL = "none"``, documented too), which run on every DIMSE
message and PDU sent or received only to log them at DEBUG/INFO. The node's own log
(``dicomveil.dimse``) names AE titles, addresses, statuses and counts, never a value from a
dataset.
"""

from __future__ import annotations

import logging

__all__ = ["ValueFree", "quiet_pynetdicom"]


class ValueFree(logging.Filter):
    """Drop exception text and tracebacks from log records (their type name stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            kind = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            record.msg, record.args = "pynetdicom: %s (details withheld)", (kind,)
            record.exc_info, record.exc_text = None, None
        elif isinstance(record.msg, BaseException):
            record.msg, record.args = (
                "pynetdicom: %s (details withheld)",
                (type(record.msg).__name__,),
            )
        return True


def quiet_pynetdicom(level: int = logging.WARNING) -> None:
    """Set pynetdicom's logger to ``level`` (at least WARNING) behind :class:`ValueFree`,
    and stop pynetdicom from formatting identifiers for its log."""
    from pynetdicom import _config

    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"  # bound by associations and servers started after
    logger = logging.getLogger("pynetdicom")
    logger.setLevel(max(level, logging.WARNING))
    if not any(isinstance(f, ValueFree) for f in logger.filters):
        logger.addFilter(ValueFree())
