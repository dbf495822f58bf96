"""The reference system as one object, for the commands that look across contexts.

``tidings map examples.ecommerce.system`` (or ``...system:system``) names all seven
contexts at once. Importing it imports every context module, which opens nothing:
engines and broker connections are created on first use.
"""

from examples.ecommerce.basket import context as basket
from examples.ecommerce.catalog import context as catalog
from examples.ecommerce.identity import context as identity
from examples.ecommerce.inventory import context as inventory
from examples.ecommerce.notifications import context as notifications
from examples.ecommerce.ordering import context as ordering
from examples.ecommerce.payments import context as payments
from tidings import System

system = System(
    "ecommerce", [identity, catalog, basket, ordering, payments, inventory, notifications]
)
