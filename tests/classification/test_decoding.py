import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from classification.decoding import HierarchyDecoder
from classification.taxonomy import Taxonomy

PATHS = (("Accessories", "Socks", "Socks"), ("Accessories", "Watches", "Watches"), ("Apparel", "Socks", "Socks"),
         ("Apparel", "Topwear", "Tshirts"), ("Footwear", "Shoes", "Casual Shoes"))
TAXONOMY = Taxonomy(
    labels={"masterCategory": ("Accessories", "Apparel", "Footwear"),
            "subCategory": ("Shoes", "Socks", "Topwear", "Watches"),
            "articleType": ("Casual Shoes", "Socks", "Tshirts", "Watches")},
    paths=PATHS)


def probabilities(draw_values, n, k):
    p = np.asarray(draw_values, dtype=np.float64).reshape(n, k) + 1e-6
    return p / p.sum(axis=1, keepdims=True)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.floats(0, 1), min_size=n * 3, max_size=n * 3),
    st.lists(st.floats(0, 1), min_size=n * 4, max_size=n * 4),
    st.lists(st.floats(0, 1), min_size=n * 4, max_size=n * 4))))
def test_decoded_path_always_exists_in_the_taxonomy(args):
    n, master, sub, article = args
    probs = {"masterCategory": probabilities(master, n, 3), "subCategory": probabilities(sub, n, 4),
             "articleType": probabilities(article, n, 4)}
    for result in HierarchyDecoder(TAXONOMY).decode(probs):
        path = tuple(result["levels"][level]["label"] for level in ("masterCategory", "subCategory", "articleType"))
        assert path in PATHS
        assert 0 < result["path_confidence"] <= 1
        assert tuple(result["top_paths"][0]["path"]) == path


def test_contradicting_argmaxes_are_resolved_by_joint_score():
    # Independent argmaxes say Footwear / Topwear / Tshirts, a path that does not exist.
    probs = {"masterCategory": np.array([[0.05, 0.40, 0.55]]), "subCategory": np.array([[0.05, 0.05, 0.85, 0.05]]),
             "articleType": np.array([[0.05, 0.05, 0.85, 0.05]])}
    result = HierarchyDecoder(TAXONOMY).decode(probs)[0]
    assert [result["levels"][lv]["label"] for lv in ("masterCategory", "subCategory", "articleType")] == \
        ["Apparel", "Topwear", "Tshirts"]
    assert result["levels"]["masterCategory"]["confidence"] == 0.40
