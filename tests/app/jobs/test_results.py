"""A job's results in one download: NDJSON with each URL's analysis, or CSV with the whole image's tags."""
import csv
import io
import json

from app.jobs import results as job_results

from .test_embedded import lost_job, wait_for


def test_results_list_every_url_in_order_with_its_analysis(client, image_server, monkeypatch):
    monkeypatch.setattr(job_results, "CHUNK", 3)  # read in chunks: 3 URLs, then 1
    urls = [image_server.url("/shirt.jpg"), image_server.url("/gone"), "=HYPERLINK(\"http://x\")",
            image_server.url("/blue.jpg")]
    job = wait_for(client, client.post("/v1/jobs", json={"image_urls": urls}).json["id"])
    response = client.get(f"/v1/jobs/{job['id']}/results")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [(line["position"], line["url"], line["state"]) for line in lines] == [
        (0, urls[0], "done"), (1, urls[1], "failed"), (2, urls[2], "failed"), (3, urls[3], "done")]
    for line in (lines[0], lines[3]):  # the analysis as GET /v1/analyses/<id> gives it
        assert line["analysis"] == client.get(f"/v1/analyses/{line['analysis_id']}").json
    assert lines[1]["analysis"] is None and lines[1]["error"]["code"] == "fetch_failed"
    assert {k: v for k, v in lines[0].items() if k != "analysis"} == job["outcomes"][0]  # the status's outcome

    table = client.get(f"/v1/jobs/{job['id']}/results?format=csv")
    assert table.mimetype == "text/csv" and f'filename="job-{job["id"]}.csv"' in table.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    whole = next(item for item in lines[0]["analysis"]["items"] if item["kind"] == "product")
    assert rows[0]["articleType"] == whole["category"]["articleType"]["label"]
    assert float(rows[0]["usage_confidence"]) == round(whole["style"]["usage"]["confidence"], 4)
    assert rows[0]["image_sha256"] == lines[0]["analysis"]["image"]["sha256"]
    assert rows[0]["colours"] == ";".join(c["name"] for c in whole["colours"]) and rows[0]["colours"]
    assert rows[0]["colour_hexes"].split(";") == [c["hex"] for c in whole["colours"]]
    assert int(rows[0]["garments"]) == sum(item["kind"] == "garment" for item in lines[0]["analysis"]["items"])
    assert (rows[1]["state"], rows[1]["error_code"], rows[1]["articleType"]) == ("failed", "fetch_failed", "")
    assert rows[2]["url"] == "'" + urls[2]  # never a formula in a spreadsheet


def test_results_can_be_read_while_the_job_runs_and_from_the_cli(app, client, image_server, tmp_path):
    job_id = lost_job(app, [image_server.url("/img/81.jpg"), image_server.url("/img/82.jpg")], running=1)
    lines = [json.loads(line) for line in client.get(f"/v1/jobs/{job_id}/results").get_data(as_text=True).splitlines()]
    assert [(line["state"], line["analysis"]) for line in lines] == [("running", None), ("queued", None)]
    out = tmp_path / "results.csv"
    result = app.test_cli_runner().invoke(args=["jobs", "results", job_id, "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [row["state"] for row in csv.DictReader(out.open())] == ["running", "queued"]
    assert app.test_cli_runner().invoke(args=["jobs", "results", "nope"]).exit_code != 0


def test_results_of_an_unknown_job_or_format(client):
    assert client.get("/v1/jobs/nope/results").status_code == 404
    job_id = client.post("/v1/jobs", json={"image_urls": ["not a url"]}).json["id"]
    assert client.get(f"/v1/jobs/{job_id}/results?format=xml").json["code"] == "invalid_request"
