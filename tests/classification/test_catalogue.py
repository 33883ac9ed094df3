import pytest

from classification.catalogue import read_catalogue, split_ids
from classification.taxonomy import Taxonomy

from .catalogue_factory import make_catalogue


@pytest.mark.parametrize("kaggle_dialect", [False, True])
def test_reads_both_csv_dialects(tmp_path, kaggle_dialect):
    catalogue = read_catalogue(make_catalogue(tmp_path, n=12, kaggle_dialect=kaggle_dialect))
    assert len(catalogue.records) == 12
    first = catalogue.records[0]
    assert first["articleType"] == "Tshirts" and first["usage"] == "Casual"
    if kaggle_dialect:
        assert first.name.count(",") == 2  # unquoted commas joined back into the product name


def test_missing_images_empty_and_na_values(tmp_path):
    root = make_catalogue(tmp_path, n=6, extra_rows=[
        ["9999", "Men", "Apparel", "Topwear", "Shirts", "Blue", "Fall", "2011", "Casual", "no image file"],
        ["1003", "", "Apparel", "Topwear", "Tshirts", "NA", "", "2011", "NA", "duplicate id, empty values"],
    ])
    catalogue = read_catalogue(root)
    assert catalogue.missing_images == ["9999"]
    record = catalogue.records[-1]
    assert record["gender"] is None and record["baseColour"] is None and record["season"] is None
    assert record["usage"] is None and record["articleType"] == "Tshirts"


def test_rejects_a_file_that_is_not_a_styles_csv(tmp_path):
    (tmp_path / "styles.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="unexpected header"):
        read_catalogue(tmp_path)


def test_split_is_reproducible_disjoint_and_stratified(tmp_path):
    records = read_catalogue(make_catalogue(tmp_path, n=120)).records
    first, second = split_ids(records, seed=3), split_ids(records, seed=3)
    assert first == second
    assert split_ids(records, seed=4) != first
    sets = [set(first[k]) for k in ("train", "val", "test")]
    assert sum(map(len, sets)) == len(records) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    by_id = {r.id: r for r in records}
    test_articles = {by_id[i]["articleType"] for i in first["test"]}
    assert test_articles == {r["articleType"] for r in records}  # every class with enough items is in test


def test_taxonomy_keeps_the_non_tree_hierarchy(tmp_path):
    taxonomy = Taxonomy.from_records(read_catalogue(make_catalogue(tmp_path, n=12)).records)
    assert ("Accessories", "Socks", "Socks") in taxonomy.paths and ("Apparel", "Socks", "Socks") in taxonomy.paths
    assert Taxonomy.from_dict(taxonomy.to_dict()) == taxonomy
    assert taxonomy.index("articleType", "Spaceship") == -1


def test_paths_are_counted_and_a_path_outnumbered_tenfold_is_a_slip(tmp_path):
    records = ([{"masterCategory": "Apparel", "subCategory": "Dress", "articleType": "Dresses"}] * 20
               + [{"masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Dresses"}] * 2
               + [{"masterCategory": "Accessories", "subCategory": "Socks", "articleType": "Socks"}] * 9
               + [{"masterCategory": "Apparel", "subCategory": "Socks", "articleType": "Socks"}] * 1
               + [{"masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Tshirts"}] * 3)
    taxonomy = Taxonomy.from_records(records)
    count = dict(zip(taxonomy.paths, taxonomy.path_images))
    assert count[("Apparel", "Dress", "Dresses")] == 20 and count[("Apparel", "Topwear", "Dresses")] == 2
    slips = {taxonomy.paths[slip]: taxonomy.paths[shown] for slip, shown in taxonomy.slips.items()}
    # 20 >= 10 x 2: a slip; 9 < 10 x 1: Socks keeps both parents; a lone path is never one
    assert slips == {("Apparel", "Topwear", "Dresses"): ("Apparel", "Dress", "Dresses")}
    assert Taxonomy.from_dict(taxonomy.to_dict()) == taxonomy
    uncounted = Taxonomy.from_dict({k: v for k, v in taxonomy.to_dict().items() if k != "path_images"})
    assert uncounted.slips == {} and uncounted.same_classes(taxonomy) and uncounted != taxonomy
