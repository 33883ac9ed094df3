"""Detector taxonomies: DeepFashion2's 13 categories and the grouped Clothing Co-Parsing garments.

Class index 0 is the background (torchvision's convention); garment classes start at 1.
"""
from __future__ import annotations

DEEPFASHION2 = ("short_sleeved_shirt", "long_sleeved_shirt", "short_sleeved_outwear", "long_sleeved_outwear",
                "vest", "sling", "shorts", "trousers", "skirt", "short_sleeved_dress", "long_sleeved_dress",
                "vest_dress", "sling_dress")

# CCP has 59 pixel labels. Many are too rare or too alike to learn apart from 856 photos (pumps vs
# heels, blouse vs top), so they are grouped into garments a storefront tags separately. `null`, `skin`
# and `hair` are not garments and are dropped; so are jewellery-sized labels whose regions are mostly
# below the minimum instance area (earrings, ring, bracelet, necklace, watch).
CCP_GROUPS = {
    "top": ("blouse", "bodysuit", "shirt", "t-shirt", "top", "vest", "sweater", "sweatshirt", "hoodie", "jumper"),
    "outerwear": ("blazer", "cape", "cardigan", "coat", "jacket", "suit"),
    "dress": ("dress", "romper"),
    "trousers": ("jeans", "pants", "leggings"),
    "shorts": ("shorts",),
    "skirt": ("skirt",),
    "footwear": ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges"),
    "bag": ("bag", "purse", "wallet"),
    "hosiery": ("socks", "stockings", "tights"),
    "hat": ("hat",),
    "eyewear": ("glasses", "sunglasses"),
    "accessory": ("accessories", "belt", "gloves", "scarf", "tie"),
    "intimates": ("bra", "intimate", "panties", "swimwear"),
}
CCP_CLASSES = tuple(CCP_GROUPS)
CCP_IGNORED = ("null", "skin", "hair", "earrings", "ring", "bracelet", "necklace", "watch")

TAXONOMIES = {"ccp": CCP_CLASSES, "deepfashion2": DEEPFASHION2}


def ccp_label_to_class(label_names: list[str]) -> dict[int, int]:
    """CCP pixel value -> detector class index (1-based); pixel values not listed are ignored."""
    group_of = {name: i + 1 for i, (group, members) in enumerate(CCP_GROUPS.items()) for name in members}
    return {value: group_of[name] for value, name in enumerate(label_names) if name in group_of}
