import json

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
