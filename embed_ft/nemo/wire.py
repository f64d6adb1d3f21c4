"""What the NeMo v1 and v2 wire contracts share, written once: the answer base class and a list's pagination.

Both generations page lists with the same five integer fields: the v1 SDK's ``PaginationData`` (nemo-microservices
1.5) and Helix's ``PaginationData`` (nemo-helix 0.8.1) have the same names, all required ints, with no bounds
(``test_nemo_contract_v1.py`` and ``test_helix_v2.py`` check each against our model). Only the envelopes around them
differ (``v1/contract.ListPage``, ``v2/contract.Page``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Response(BaseModel):
    """An answer: every field is kept; the declared ones are those a client reads."""

    model_config = ConfigDict(extra="allow")


class Pagination(Response):
    """A list answer's ``pagination``: defaults where a server leaves a field out, so a page still reads."""

    page: int = 1
    page_size: int = 0
    current_page_size: int = 0
    total_pages: int = 0
    total_results: int = 0
