import csv
import json
import re

from .servers import garment_photo


def test_analyse_command_on_a_file_and_a_url(app, tmp_path, image_server):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(garment_photo((120, 60, 20)))
    result = app.test_cli_runner().invoke(args=["analyse", str(photo)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["created"] is True and body["items"][0]["kind"] == "product"
    again = json.loads(app.test_cli_runner().invoke(args=["analyse", str(photo)]).output)
    assert again["created"] is False and again["id"] == body["id"]
    refused = app.test_cli_runner().invoke(args=["analyse", "http://10.0.0.1/x.jpg"])
    assert refused.exit_code != 0 and "blocked_address" in refused.output


def test_db_upgrade_command(app):
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "head" in result.output


def test_labels_import_labels_items_by_url_and_id_and_counts_failures(app, client, tmp_path, image_server):
    shirt = client.post("/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")}).json
    blue = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg")}).json
    source = tmp_path / "products.csv"
    rows = [["item_id", "url", "articleType", " gender", "usage"],
            [str(blue["items"][0]["id"]), "", "Jeans", "", "Casual"],
            ["999999", "", "Shirts", "", ""],
            [str(shirt["items"][0]["id"]), "", "Shirts", "Men", ""],
            [str(shirt["items"][0]["id"]), "", "Trousers of gold", "", ""],
            ["x", "", "Shirts", "", ""]]
    source.write_text("\n".join(",".join(row) for row in rows) + "\n")
    result = app.test_cli_runner().invoke(args=["labels", "import", str(source)])
    assert result.exit_code == 0, result.output
    summary = re.search(r"5 rows: 2 items labelled((, \d+ \w+)*)\n", result.output)  # after the progress bar
    assert summary and sorted(summary.group(1).split(", ")[1:]) == ["1 invalid_request", "1 not_found", "1 unknown_label"]
    assert "line 5: unknown_label" in result.output
    labelled = client.get(f"/v1/analyses/{blue['id']}").json["items"][0]
    assert labelled["labels"]["tags"] == {"masterCategory": "Apparel", "subCategory": "Bottomwear", "articleType": "Jeans",
                                          "usage": "Casual"}
    assert client.get(f"/v1/analyses/{shirt['id']}").json["items"][0]["category"]["gender"]["label"] == "Men"

    by_url = tmp_path / "by-url.csv"
    by_url.write_text(f"url,articleType\n{image_server.url('/blue.jpg')},Track Pants\n{image_server.url('/never.jpg')},Shirts\n")
    result = app.test_cli_runner().invoke(args=["labels", "import", str(by_url)])
    assert "2 rows: 1 items labelled, 1 not_found" in result.output, result.output
    assert client.get(f"/v1/analyses/{blue['id']}").json["items"][0]["category"]["articleType"]["label"] == "Track Pants"
    nothing = tmp_path / "no-key.csv"
    nothing.write_text("articleType\nShirts\n")
    assert app.test_cli_runner().invoke(args=["labels", "import", str(nothing)]).exit_code != 0


def test_labels_export_reads_back_with_import(app, client, tmp_path, image_server):
    shirt = client.post("/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")}).json["items"][0]
    blue = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg")}).json["items"][0]
    client.put(f"/v1/items/{shirt['id']}/labels", json={"articleType": "Shirts", "season": "Winter"})
    client.put(f"/v1/items/{blue['id']}/labels", json={"gender": "Boys"})
    exported = tmp_path / "labels.csv"
    result = app.test_cli_runner().invoke(args=["labels", "export", str(exported)])
    assert result.exit_code == 0 and "2 labelled items written" in result.output, result.output
    with exported.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["item_id"]), r["url"], r["articleType"], r["subCategory"], r["season"], r["gender"]) for r in rows] == [
        (shirt["id"], image_server.url("/shirt.jpg"), "Shirts", "Topwear", "Winter", ""),
        (blue["id"], image_server.url("/blue.jpg"), "", "", "", "Boys")]
    for item in (shirt, blue):
        client.delete(f"/v1/items/{item['id']}/labels")
    result = app.test_cli_runner().invoke(args=["labels", "import", str(exported)])
    assert "2 rows: 2 items labelled" in result.output, result.output
    again = {i["id"]: i["labels"]["tags"] for i in client.get("/v1/items", query_string={"labelled": "true"}).json["items"]}
    assert again == {shirt["id"]: {"masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Shirts",
                                   "season": "Winter"}, blue["id"]: {"gender": "Boys"}}
