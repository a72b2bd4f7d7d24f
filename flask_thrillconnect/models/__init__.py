"""The wire models: every ThrillConnect shape once, as a frozen dataclass with its schema.

* :mod:`~flask_thrillconnect.models.rest`: the REST answers (jackpot, sources, ticker,
  currencies, CORS rules);
* :mod:`~flask_thrillconnect.models.stream`: envelopes, the events the package reads and the
  requests it relays or sends;
* :mod:`~flask_thrillconnect.models.bodies`: the JSON bodies browsers send to the blueprint;
* :mod:`~flask_thrillconnect.models.fields`: money, identifiers, timestamps and their rules;
* :mod:`~flask_thrillconnect.models.encoding`: the one JSON encoder and parser;
* :mod:`~flask_thrillconnect.models.base`: how a schema is built from a dataclass.

Every schema leaves out unknown fields, so additive upstream changes never break a portal.
Money loads as :class:`~decimal.Decimal`: from JSON numbers through their shortest ``repr``
(never binary float noise) and from the ticker's decimal strings.
"""

from . import base, bodies, encoding, rest, stream
from .base import *  # noqa: F403
from .bodies import *  # noqa: F403
from .encoding import *  # noqa: F403
from .fields import CONTRIBUTION_KINDS, ContributionType
from .rest import *  # noqa: F403
from .stream import *  # noqa: F403

__all__ = ["CONTRIBUTION_KINDS", "ContributionType"]
__all__ += base.__all__
__all__ += bodies.__all__
__all__ += encoding.__all__
__all__ += rest.__all__
__all__ += stream.__all__
