"""The purchase: the saga that runs one (`_saga`, over the pure state machine in `_steps`), the
subscriber actor that serialises a mobile's purchases (`_actor`, recording each saga's end in
`_completions`), the recoverer (`_recovery`) and the service the API calls (`_service`)."""

from gestor.purchase._deps import ProfileCache, PurchaseDeps
from gestor.purchase._portrait import Portrait
from gestor.purchase._recovery import Recoverer
from gestor.purchase._saga import refund_id, step_id
from gestor.purchase._service import (
    Busy,
    Crowded,
    OfferList,
    PurchaseService,
    open_purchase_service,
)
from gestor.purchase._steps import Verdict

__all__ = [
    "Busy",
    "Crowded",
    "OfferList",
    "Portrait",
    "ProfileCache",
    "PurchaseDeps",
    "PurchaseService",
    "Recoverer",
    "Verdict",
    "open_purchase_service",
    "refund_id",
    "step_id",
]
