"""The only code that imports kopf: thin handlers that parse, store and wake the scheduler.

`kopf run -m batchyard.handlers` (or `batchyard run`) loads this package.
"""

from batchyard.handlers import operator as operator  # registers the handlers
