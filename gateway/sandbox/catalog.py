"""The sandbox's seeded demo marketplace: a watch and jewellery store with two buyers.

Everything a demo or test needs to log in:

- API clients (no secret; password, anonymous and refresh grants):
  `CLIENT_ID` = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe0000001" (anonymous shoppers land in buyer "acme"),
  `GLOBEX_CLIENT_ID` = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe0000002" (anonymous shoppers land in "globex").
  Either client accepts password logins of users of both buyers.
- An admin API client with a secret (client credentials grant only), for back-office jobs such as
  `ocgateway backfill`: `ADMIN_CLIENT_ID` = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe00000ad",
  `ADMIN_CLIENT_SECRET` = "sandbox-admin-secret". Its tokens may list every buyer's submitted
  orders (`GET /v1/orders/Incoming|All`) and their line items, nothing else.
- Buyer "acme" (USD, en-US), catalog `CATALOG_ID`:
    jane / jane-pass  repeat customer: 3 submitted orders, 500+ USD spent (`REPEAT_CUSTOMER`)
    joe  / joe-pass   newcomer: no orders (`NEWCOMER`)
- Buyer "globex" (EUR, de-DE), same catalog:
    gina / gina-pass  one submitted order
    gus  / gus-pass   newcomer: no orders
- Anonymous template users: "anon-template" (acme) and "anon-template-globex" (globex).

The catalog: 60 products p-001..p-060 with `xp.brand`, `xp.color`, `xp.material`,
`xp.popularity` (int 1..100), `xp.sale` (bool), `xp.rating`, `xp.Images`, `xp.url`; a
two-level category tree (watches > mens-watches..., jewellery > rings..., accessories > straps...,
apparel > scarves, plus flat "sale" and "new-arrivals"); promotions whose `xp.targetAudience`
is one of "all", "newVisitor", "repeatCustomer", "vip". Products are generated from small tables
so the data reads as a store without a wall of literals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

CATALOG_ID = "ocgw-demo"
SELLER_ID = "ocgw-seller"
CLIENT_ID = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe0000001"
GLOBEX_CLIENT_ID = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe0000002"
ADMIN_CLIENT_ID = "0c4a7c2e-5b1d-4e0f-9a3e-0cafe00000ad"
ADMIN_CLIENT_SECRET = "sandbox-admin-secret"
ACME_BUYER_ID = "acme"
GLOBEX_BUYER_ID = "globex"

SHOPPER_ROLES = ("Shopper", "MeAdmin", "MeXpAdmin", "MeAddressAdmin", "PasswordReset")
ANONYMOUS_ROLES = ("Shopper", "MeAdmin")


@dataclass(frozen=True, slots=True)
class Buyer:
    id: str
    name: str
    currency: str
    language: str
    price_factor: float  # list prices are in USD; other currencies scale them


@dataclass(frozen=True, slots=True)
class SeedUser:
    buyer_id: str
    username: str
    password: str | None
    first_name: str
    last_name: str
    email: str | None
    anonymous_template: bool = False


@dataclass(frozen=True, slots=True)
class ApiClient:
    id: str
    anonymous_username: str | None  # the "DefaultContextUserName" anonymous tokens act as
    secret: str | None = None  # set only on the admin client, whose grants then require it


BUYERS = (
    Buyer(ACME_BUYER_ID, "Acme Outfitters", "USD", "en-US", 1.0),
    Buyer(GLOBEX_BUYER_ID, "Globex Handel GmbH", "EUR", "de-DE", 0.92),
)

JANE = SeedUser(ACME_BUYER_ID, "jane", "jane-pass", "Jane", "Doe", "jane@acme.example")
JOE = SeedUser(ACME_BUYER_ID, "joe", "joe-pass", "Joe", "Bloggs", "joe@acme.example")
GINA = SeedUser(GLOBEX_BUYER_ID, "gina", "gina-pass", "Gina", "Weber", "gina@globex.example")
GUS = SeedUser(GLOBEX_BUYER_ID, "gus", "gus-pass", "Gus", "Krause", "gus@globex.example")
REPEAT_CUSTOMER = JANE
NEWCOMER = JOE
ANON_ACME = SeedUser(ACME_BUYER_ID, "anon-template", None, "", "", None, True)
ANON_GLOBEX = SeedUser(GLOBEX_BUYER_ID, "anon-template-globex", None, "", "", None, True)
USERS = (JANE, JOE, GINA, GUS, ANON_ACME, ANON_GLOBEX)

API_CLIENTS = (
    ApiClient(CLIENT_ID, ANON_ACME.username),
    ApiClient(GLOBEX_CLIENT_ID, ANON_GLOBEX.username),
    ApiClient(ADMIN_CLIENT_ID, None, ADMIN_CLIENT_SECRET),
)

# Submitted orders already in the history: (username, days before the sandbox started, lines).
ORDER_HISTORY: tuple[tuple[str, int, tuple[tuple[str, int], ...]], ...] = (
    ("jane", 120, (("p-001", 1), ("p-016", 2))),
    ("jane", 61, (("p-023", 1), ("p-030", 1))),
    ("jane", 12, (("p-012", 1),)),
    ("gina", 33, (("p-017", 1), ("p-041", 1))),
)

# (id, name, parent, description)
_CATEGORIES = (
    ("watches", "Watches", None, "Mechanical, quartz and smart watches."),
    ("mens-watches", "Men's Watches", "watches", "Chronographs, divers and dress watches."),
    ("womens-watches", "Women's Watches", "watches", "Petite, bangle and classic watches."),
    ("smart-watches", "Smart Watches", "watches", "Connected watches and fitness trackers."),
    ("jewellery", "Jewellery", None, "Rings, necklaces, earrings and bracelets."),
    ("rings", "Rings", "jewellery", "Signets, bands and solitaires."),
    ("necklaces", "Necklaces", "jewellery", "Pendants, chains and lockets."),
    ("earrings", "Earrings", "jewellery", "Hoops, studs and drops."),
    ("bracelets", "Bracelets", "jewellery", "Cuffs, links and charms."),
    ("accessories", "Accessories", None, "Straps, wallets and sunglasses."),
    ("straps", "Watch Straps", "accessories", "Leather, mesh and NATO straps."),
    ("wallets", "Wallets", "accessories", "Wallets and card holders."),
    ("sunglasses", "Sunglasses", "accessories", "Polarised frames for every face."),
    ("apparel", "Apparel", None, "Scarves to finish the look."),
    ("scarves", "Scarves", "apparel", "Wool and silk scarves."),
    ("sale", "Sale", None, "Reduced for a limited time."),
    ("new-arrivals", "New Arrivals", None, "The latest additions to the store."),
)

# (leaf category, product nouns, typical USD price, a sentence for the description)
_LINES = (
    (
        "mens-watches",
        ("Chronograph", "Diver", "Field Watch", "Pilot Watch", "Dress Watch"),
        420,
        "Water resistant to 100 m, with a sapphire crystal.",
    ),
    (
        "womens-watches",
        ("Petite Watch", "Bangle Watch", "Moonphase Watch", "Classic Watch"),
        380,
        "A slim case that sits neatly under a cuff.",
    ),
    (
        "smart-watches",
        ("Smartwatch", "Fitness Tracker"),
        290,
        "Tracks heart rate, sleep and workouts for a week on one charge.",
    ),
    (
        "rings",
        ("Signet Ring", "Band Ring", "Solitaire Ring"),
        240,
        "Hand-finished and available in every size.",
    ),
    (
        "necklaces",
        ("Pendant Necklace", "Chain Necklace", "Locket"),
        180,
        "Comes on an adjustable 45 cm chain.",
    ),
    (
        "earrings",
        ("Hoop Earrings", "Stud Earrings", "Drop Earrings"),
        120,
        "Hypoallergenic posts for all-day wear.",
    ),
    (
        "bracelets",
        ("Cuff Bracelet", "Link Bracelet", "Charm Bracelet"),
        150,
        "A secure clasp and a polished finish.",
    ),
    (
        "straps",
        ("Leather Strap", "Mesh Strap", "NATO Strap"),
        45,
        "Quick-release pins fit most 20 mm lugs.",
    ),
    (
        "wallets",
        ("Bifold Wallet", "Card Holder"),
        70,
        "Slim enough for a front pocket, with RFID shielding.",
    ),
    (
        "sunglasses",
        ("Aviator Sunglasses", "Wayfarer Sunglasses"),
        140,
        "Polarised lenses with full UV400 protection.",
    ),
    ("scarves", ("Wool Scarf", "Silk Scarf"), 85, "Soft, warm and made to last."),
)
_BRANDS = ("Halden", "Nordvik", "Aurelia", "Marlowe", "Kestrel", "Sable & Co")
_STYLES = (
    "Classic",
    "Heritage",
    "Nova",
    "Meridian",
    "Atlas",
    "Luna",
    "Vega",
    "Orion",
    "Solstice",
    "Aria",
    "Tempo",
    "Summit",
)
_COLORS = ("black", "silver", "gold", "rose gold", "blue", "green", "brown", "white")
_MATERIALS = {
    "mens-watches": ("stainless steel", "titanium", "bronze"),
    "womens-watches": ("stainless steel", "ceramic", "gold-plated steel"),
    "smart-watches": ("aluminium", "titanium"),
    "straps": ("leather", "stainless steel", "nylon"),
    "wallets": ("leather",),
    "sunglasses": ("acetate", "metal"),
    "scarves": ("wool", "silk"),
}
_JEWELLERY_MATERIALS = ("sterling silver", "18k gold", "platinum")
PRODUCT_COUNT = 60
_NEW_ARRIVALS = 10  # the newest products also sit in "new-arrivals"

_PROMOTIONS = (
    # (id, code, name, audience, value expression, eligible expression, description)
    (
        "promo-welcome",
        "WELCOME10",
        "Welcome: 10% off your first order",
        "newVisitor",
        "Order.Subtotal * .10",
        "true",
        "A thank-you for trying us out.",
    ),
    (
        "promo-loyal",
        "LOYAL15",
        "15% off for returning customers",
        "repeatCustomer",
        "Order.Subtotal * .15",
        "Order.Subtotal >= 100",
        "For customers who keep coming back.",
    ),
    (
        "promo-vip",
        "VIP20",
        "VIP: 20% off everything",
        "vip",
        "Order.Subtotal * .20",
        "true",
        "Reserved for our best customers.",
    ),
    (
        "promo-freeship",
        "FREESHIP",
        "Free shipping over 75",
        "all",
        "Order.ShippingCost",
        "Order.Subtotal >= 75",
        "Free standard delivery on larger orders.",
    ),
    (
        "promo-watchweek",
        "WATCHWEEK",
        "Watch week: 50 off any watch",
        "all",
        "50",
        "Order.Subtotal >= 250",
        "Fifty off when your order includes a watch.",
    ),
    (
        "promo-comeback",
        "COMEBACK25",
        "We missed you: 25 off",
        "repeatCustomer",
        "25",
        "Order.Subtotal >= 150",
        "For customers we have not seen for a while.",
    ),
)


def iso(moment: datetime) -> str:
    """OrderCloud's date format: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


_EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def product_rows() -> list[dict[str, Any]]:
    """The products as currency-neutral rows (USD list price), always the same 60."""
    rng = random.Random(2024)
    rows = []
    for n in range(1, PRODUCT_COUNT + 1):
        category, nouns, typical, blurb = _LINES[(n - 1) % len(_LINES)]
        noun = nouns[((n - 1) // len(_LINES)) % len(nouns)]
        brand = _BRANDS[(n * 5) % len(_BRANDS)]
        style = _STYLES[(n * 7) % len(_STYLES)]
        color = _COLORS[(n * 3) % len(_COLORS)]
        materials = _MATERIALS.get(category, _JEWELLERY_MATERIALS)
        material = materials[n % len(materials)]
        price = round(typical * rng.uniform(0.7, 1.8)) - 0.01
        rows.append(
            {
                "id": f"p-{n:03d}",
                "name": f"{brand} {style} {noun}",
                "description": f"{style} {noun.lower()} by {brand} in {color} {material}. {blurb}",
                "category": category,
                "brand": brand,
                "color": color,
                "material": material,
                "price": price,
                "sale": n % 4 == 0,
                "popularity": rng.randint(1, 100),
                "rating": round(rng.uniform(3.2, 5.0), 1),
                "stock": rng.randint(0, 80),
                "created": iso(_EPOCH + timedelta(days=7 * n)),
            }
        )
    return rows


def buyer_product(row: dict[str, Any], buyer: Buyer) -> dict[str, Any]:
    """One product as `GET /v1/me/products` shows it to `buyer` (a BuyerProduct)."""
    price = round(row["price"] * buyer.price_factor, 2)
    sale_price = round(price * 0.8, 2) if row["sale"] else None
    slug = row["name"].lower().replace("& ", "").replace(" ", "-")
    return {
        "PriceSchedule": {
            "OwnerID": SELLER_ID,
            "ID": f"ps-{row['id']}-{buyer.currency.lower()}",
            "Name": f"{row['name']} ({buyer.currency})",
            "ApplyTax": True,
            "ApplyShipping": True,
            "MinQuantity": 1,
            "MaxQuantity": None,
            "UseCumulativeQuantity": False,
            "RestrictedQuantity": False,
            "PriceBreaks": [
                {
                    "Quantity": 1,
                    "Price": price,
                    "SalePrice": sale_price,
                    "SubscriptionPrice": None,
                    "BundlePrice": None,
                }
            ],
            "Currency": buyer.currency,
            "SaleStart": iso(_EPOCH) if row["sale"] else None,
            "SaleEnd": None,
            "IsOnSale": row["sale"],
            "xp": None,
        },
        "ID": row["id"],
        "ParentID": None,
        "IsParent": False,
        "IsBundle": False,
        "Name": row["name"],
        "Description": row["description"],
        "QuantityMultiplier": 1,
        "ShipWeight": 0.5,
        "ShipHeight": 8,
        "ShipWidth": 12,
        "ShipLength": 12,
        "Active": True,
        "SpecCount": 0,
        "VariantCount": 0,
        "ShipFromAddressID": None,
        "Inventory": {
            "Enabled": True,
            "NotificationPoint": 5,
            "VariantLevelTracking": False,
            "OrderCanExceed": True,
            "QuantityAvailable": row["stock"],
            "LastUpdated": row["created"],
        },
        "DefaultSupplierID": None,
        "AllSuppliersCanSell": False,
        "Returnable": True,
        "DateCreated": row["created"],
        "xp": {
            "brand": row["brand"],
            "color": row["color"],
            "material": row["material"],
            "popularity": row["popularity"],
            "sale": row["sale"],
            "rating": row["rating"],
            "Images": [{"Url": f"https://images.example.com/ocgw/{row['id']}.jpg"}],
            "url": f"/products/{row['id']}/{slug}",
        },
    }


def categories() -> list[dict[str, Any]]:
    """The category tree as OrderCloud Category objects (ChildCount filled in)."""
    children: dict[str, int] = {}
    for _, _, parent, _ in _CATEGORIES:
        if parent:
            children[parent] = children.get(parent, 0) + 1
    return [
        {
            "ID": cid,
            "Name": name,
            "Description": text,
            "ListOrder": order,
            "Active": True,
            "ParentID": parent,
            "ChildCount": children.get(cid, 0),
            "xp": None,
        }
        for order, (cid, name, parent, text) in enumerate(_CATEGORIES, start=1)
    ]


def assignments(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Category ID -> IDs of the products assigned to it directly (a product can be in several)."""
    assigned: dict[str, set[str]] = {cid: set() for cid, _, _, _ in _CATEGORIES}
    for row in rows:
        assigned[row["category"]].add(row["id"])
        if row["sale"]:
            assigned["sale"].add(row["id"])
    for row in rows[-_NEW_ARRIVALS:]:
        assigned["new-arrivals"].add(row["id"])
    return assigned


def promotions() -> list[dict[str, Any]]:
    """Promotions for `GET /v1/me/promotions`, each aimed at an audience in `xp.targetAudience`."""
    start = iso(_EPOCH)
    return [
        {
            "ID": pid,
            "LineItemLevel": False,
            "Code": code,
            "Name": name,
            "RedemptionLimit": None,
            "RedemptionLimitPerUser": 1 if audience == "newVisitor" else None,
            "RedemptionCount": 0,
            "QuantityLimitPerOrder": None,
            "ItemLimitPerOrder": None,
            "ItemSortBy": None,
            "Description": text,
            "FinePrint": "One code per order.",
            "StartDate": start,
            "ExpirationDate": None,
            "EligibleExpression": eligible,
            "ValueExpression": value,
            "CanCombine": audience == "all",
            "AllowAllBuyers": True,
            "OwnerID": SELLER_ID,
            "AutoApply": False,
            "Active": True,
            "UseIntegration": False,
            "Priority": None,
            "xp": {"targetAudience": audience},
        }
        for pid, code, name, audience, value, eligible, text in _PROMOTIONS
    ]
