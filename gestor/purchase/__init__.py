"""The purchase: the saga that runs one (`_saga`, over the pure state machine in `_steps`), the
subscriber actor that serialises a mobile's purchases (`_actor`) and the service the API calls."""

from gestor.purchase._actor import Buy, SubscriberActor, Ticket, actor_factory
from gestor.purchase._deps import ProfileCache, PurchaseDeps, SubscriberView
from gestor.purchase._recovery import Recoverer, RecovererStatistics, resume
from gestor.purchase._saga import SagaAbandoned, final, refund_id, run_purchase
from gestor.purchase._service import Busy, OfferList, PurchaseService, PurchaseStatistics
from gestor.purchase._steps import Verdict

__all__ = [
    "Busy",
    "Buy",
    "OfferList",
    "ProfileCache",
    "PurchaseDeps",
    "PurchaseService",
    "PurchaseStatistics",
    "Recoverer",
    "RecovererStatistics",
    "SagaAbandoned",
    "SubscriberActor",
    "SubscriberView",
    "Ticket",
    "Verdict",
    "actor_factory",
    "final",
    "refund_id",
    "resume",
    "run_purchase",
]
