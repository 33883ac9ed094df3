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


# ---- constrained decoding (the detector prior) ----------------------------------------------------------

def random_probs(rng, n):
    draw = lambda k: rng.dirichlet(np.ones(k), size=n)  # noqa: E731
    return {"masterCategory": draw(3), "subCategory": draw(4), "articleType": draw(4)}


def chosen_path(result):
    return tuple(result["levels"][level]["label"] for level in ("masterCategory", "subCategory", "articleType"))


def test_without_allowed_sets_decoding_is_unchanged():
    probs = random_probs(np.random.default_rng(0), 20)
    decoder = HierarchyDecoder(TAXONOMY)
    plain = decoder.decode(probs)
    assert decoder.decode(probs, allowed=[None] * 20) == plain
    assert decoder.decode(probs, allowed=None, outside_weight=0.01) == plain
    assert not any(r["constrained"] for r in plain)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sets(st.sampled_from(PATHS), min_size=1))
def test_hard_constraint_picks_the_best_allowed_path(seed, allowed):
    probs = random_probs(np.random.default_rng(seed), 4)
    decoder = HierarchyDecoder(TAXONOMY)
    scores = decoder.path_scores(probs)
    plain = decoder.decode(probs)
    for row, result in enumerate(decoder.decode(probs, allowed=[allowed] * 4)):
        candidates = [p for p, path in enumerate(PATHS) if path in allowed]
        assert chosen_path(result) == PATHS[max(candidates, key=lambda p: scores[row, p])]
        assert result["constrained"]
        # Everything reported stays the model's own: level confidences, the chosen path's share, top paths.
        for level, value in result["levels"].items():
            assert value["confidence"] == probs[level][row, value["index"]]
        shares = {tuple(t["path"]): t["confidence"] for t in plain[row]["top_paths"]}
        if chosen_path(result) in shares:
            assert result["path_confidence"] == shares[chosen_path(result)]
        assert result["top_paths"] == plain[row]["top_paths"]


def test_allowed_paths_keep_the_master_category_apart():
    # Socks exist under Accessories and Apparel: allowing one path does not allow the other.
    probs = {"masterCategory": np.array([[0.6, 0.3, 0.1]]), "subCategory": np.array([[0.1, 0.7, 0.1, 0.1]]),
             "articleType": np.array([[0.1, 0.7, 0.1, 0.1]])}
    result = HierarchyDecoder(TAXONOMY).decode(probs, allowed=[{("Apparel", "Socks", "Socks")}])[0]
    assert chosen_path(result) == ("Apparel", "Socks", "Socks")


def test_footwear_detection_turns_a_shorts_like_answer_into_shoes():
    # The model prefers Apparel/Topwear/Tshirts, the detector says footwear: Casual Shoes is the best allowed.
    probs = {"masterCategory": np.array([[0.05, 0.80, 0.15]]), "subCategory": np.array([[0.1, 0.05, 0.8, 0.05]]),
             "articleType": np.array([[0.1, 0.05, 0.8, 0.05]])}
    decoder = HierarchyDecoder(TAXONOMY)
    footwear = {("Footwear", "Shoes", "Casual Shoes"), ("Footwear", "Shoes", "Heels")}  # Heels: not in this taxonomy
    result = decoder.decode(probs, allowed=[footwear])[0]
    assert chosen_path(result) == ("Footwear", "Shoes", "Casual Shoes")
    assert result["levels"]["masterCategory"]["confidence"] == 0.15
    assert result["top_paths"][0]["path"] == ["Apparel", "Topwear", "Tshirts"]
    assert result["path_confidence"] < 0.5


def test_soft_prior_keeps_a_confident_answer_and_flips_a_doubtful_one():
    decoder = HierarchyDecoder(TAXONOMY)
    confident = {"masterCategory": np.array([[0.01, 0.98, 0.01]]), "subCategory": np.array([[0.01, 0.01, 0.97, 0.01]]),
                 "articleType": np.array([[0.01, 0.01, 0.97, 0.01]])}
    doubtful = {"masterCategory": np.array([[0.1, 0.5, 0.4]]), "subCategory": np.array([[0.4, 0.1, 0.45, 0.05]]),
                "articleType": np.array([[0.4, 0.1, 0.45, 0.05]])}
    allowed = [{("Footwear", "Shoes", "Casual Shoes")}]
    assert chosen_path(decoder.decode(confident, allowed=allowed, outside_weight=0.01)[0])[2] == "Tshirts"
    assert chosen_path(decoder.decode(confident, allowed=allowed)[0])[2] == "Casual Shoes"  # hard: always
    assert chosen_path(decoder.decode(doubtful, allowed=allowed, outside_weight=0.01)[0])[2] == "Casual Shoes"


def test_an_allowed_set_the_taxonomy_cannot_express_leaves_the_image_unconstrained():
    probs = random_probs(np.random.default_rng(1), 3)
    decoder = HierarchyDecoder(TAXONOMY)
    constrained = decoder.decode(probs, allowed=[{("Accessories", "Bags", "Handbags")}, None,
                                                 {("Accessories", "Watches", "Watches")}])
    plain = decoder.decode(probs)
    assert constrained[0] == plain[0] and constrained[1] == plain[1]
    assert chosen_path(constrained[2]) == ("Accessories", "Watches", "Watches") and constrained[2]["constrained"]


def test_level_masks_are_the_classes_the_allowed_paths_go_through():
    decoder = HierarchyDecoder(TAXONOMY)
    allowed = {("Apparel", "Socks", "Socks"), ("Footwear", "Shoes", "Casual Shoes")}
    assert decoder.level_mask(allowed, 0).tolist() == [False, True, True]  # Apparel, Footwear
    assert decoder.level_mask(allowed, 1).tolist() == [True, True, False, False]  # Shoes, Socks
    assert decoder.level_mask(allowed, 2).tolist() == [True, True, False, False]  # Casual Shoes, Socks
    assert not decoder.level_mask({("Apparel", "Shorts", "Shorts")}, 2).any()  # no path of the taxonomy


def test_a_slip_path_is_chosen_as_scored_and_shown_as_its_articletypes_commonest():
    paths = (("Apparel", "Dress", "Dresses"), ("Apparel", "Topwear", "Dresses"), ("Apparel", "Topwear", "Tshirts"))
    labels = {"masterCategory": ("Apparel",), "subCategory": ("Dress", "Topwear"), "articleType": ("Dresses", "Tshirts")}
    counted = Taxonomy(labels=labels, paths=paths, path_images=(431, 2, 6000))
    uncounted = Taxonomy(labels=labels, paths=paths)
    # A dress the model files under Topwear: the joint score picks the slip path Apparel / Topwear / Dresses.
    probs = {"masterCategory": np.array([[1.0]]), "subCategory": np.array([[0.2, 0.8]]),
             "articleType": np.array([[0.7, 0.3]])}
    as_scored, = HierarchyDecoder(uncounted).decode(probs)
    shown, = HierarchyDecoder(counted).decode(probs)
    assert [as_scored["levels"][level]["label"] for level in ("subCategory", "articleType")] == ["Topwear", "Dresses"]
    assert [shown["levels"][level]["label"] for level in ("subCategory", "articleType")] == ["Dress", "Dresses"]
    assert shown["levels"]["subCategory"]["confidence"] == 0.2  # the model's own probability of what is shown
    shares = {tuple(p["path"]): p["confidence"] for p in as_scored["top_paths"]}
    assert np.isclose(shown["path_confidence"], shares[paths[0]] + shares[paths[1]])  # both paths' shares
    assert paths[1] not in {tuple(p["path"]) for p in shown["top_paths"]}
    # A constrained choice is shown the same way when the shown path is allowed too (a detector class allows
    # an articleType under every parent); a hard choice never leaves its allowed set.
    dresses, only_the_slip = HierarchyDecoder(counted).decode({k: np.repeat(v, 2, axis=0) for k, v in probs.items()},
                                                              allowed=[set(paths[:2]), {paths[1]}])
    assert dresses["levels"]["subCategory"]["label"] == "Dress" and dresses["constrained"]
    assert only_the_slip["levels"]["subCategory"]["label"] == "Topwear" and only_the_slip["constrained"]
