import json

import pytest

from classification.compare_bundles import FIGURES, choose, compare, held_out_figures, main


def write_bundle(folder, version, shift=0.0, overrides=None, kinds=("catalogue", "photo", "street")):
    """A manifest with the 13 figures at 0.5 + shift, some of them overridden by label."""
    metrics = {kind: {} for kind in kinds}
    for kind, key, label in FIGURES:
        if kind in metrics:
            metrics[kind][key] = round((overrides or {}).get(label, 0.5 + shift), 4)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"kind": "classifier", "version": version, "metrics": metrics}))
    return folder


def test_sum_and_count_against_the_baseline(tmp_path):
    baseline = held_out_figures(write_bundle(tmp_path / "base", "base"))
    candidate = held_out_figures(write_bundle(tmp_path / "c", "c", shift=0.01,
                                              overrides={"street crops masterCategory": 0.45}))
    [scored] = compare(baseline, [candidate])
    assert scored.up_or_equal == 12
    assert scored.delta_sum == pytest.approx(12 * 0.01 - 0.05)


def test_the_largest_positive_sum_is_chosen_and_none_when_all_lose(tmp_path):
    baseline = held_out_figures(write_bundle(tmp_path / "base", "base"))
    small = held_out_figures(write_bundle(tmp_path / "small", "small", shift=0.001))
    large = held_out_figures(write_bundle(tmp_path / "large", "large", overrides={"catalogue articleType": 0.6}))
    worse = held_out_figures(write_bundle(tmp_path / "worse", "worse", shift=-0.001))
    assert choose(compare(baseline, [small, large, worse])).version == "large"
    assert choose(compare(baseline, [worse])) is None


def test_the_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    write_bundle(tmp_path / "base", "base")
    write_bundle(tmp_path / "c", "cand", shift=0.002)
    chosen = main(["--baseline", str(tmp_path / "base"), str(tmp_path / "c"), "--json", str(tmp_path / "out.json")])
    assert chosen.version == "cand"
    printed = capsys.readouterr().out
    assert "| catalogue articleType | 0.5000 | **0.5020** |" in printed
    assert "+0.0260 / 13" in printed and "Chosen: `cand`" in printed
    assert json.loads((tmp_path / "out.json").read_text())["chosen"] == "cand"


def test_a_bundle_not_evaluated_on_every_kind_is_refused(tmp_path, capsys):
    write_bundle(tmp_path / "base", "base")
    write_bundle(tmp_path / "c", "c", kinds=("catalogue",))
    with pytest.raises(SystemExit) as exit_info:
        main(["--baseline", str(tmp_path / "base"), str(tmp_path / "c")])
    assert exit_info.value.code == 2
    assert "not evaluated on photo.articleType_group_accuracy" in capsys.readouterr().err


def test_a_bundle_served_with_the_mirror_view_is_named_apart_from_the_same_weights_without(tmp_path):
    folder = write_bundle(tmp_path / "flip", "same")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "inference": {"flip_average": True}}))
    assert held_out_figures(folder).version == "same+flip"
    (folder / "manifest.json").write_text(json.dumps({**manifest, "inference": {"flip_average": 0.8}}))
    assert held_out_figures(folder).version == "same+flip<0.8"
    (folder / "manifest.json").write_text(json.dumps({**manifest, "inference": {"flip_average": True,
                                                                                  "neighbour_vote": "abc"}}))
    assert held_out_figures(folder).version == "same+flip+vote-abc"
    assert held_out_figures(write_bundle(tmp_path / "plain", "same")).version == "same"


def test_the_baselines_intervals_stand_beside_its_figures(tmp_path, capsys):
    folder = write_bundle(tmp_path / "base", "base")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"]["intervals_95"] = {"catalogue": {"articleType": [0.48, 0.52]}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_bundle(tmp_path / "c", "cand", shift=0.002)
    main(["--baseline", str(folder), str(tmp_path / "c")])
    printed = capsys.readouterr().out
    assert "| baseline `base` | its 95% interval | **chosen** `cand` |" in printed
    assert "| catalogue articleType | 0.5000 | 0.4800-0.5200 | **0.5020** |" in printed
    assert "| catalogue gender | 0.5000 |  | **0.5020** |" in printed  # no interval recorded for it
    assert "| sum against baseline / up or equal (of 13) | | | +0.0260 / 13 |" in printed
