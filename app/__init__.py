"""fashion-tagger's Flask service: create_app() composes config, database, pipeline and blueprints."""
from __future__ import annotations

import torch  # noqa: F401  (torch and torchvision before TensorFlow, always)
import torchvision  # noqa: F401
from flask import Flask

from .config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from . import (api, auth, changes_api, cli, db, embeddings, errors, gc_freeze, logs, models_api, ops, ratelimits,
                   search_api, subscriptions_api, taxonomy_api)
    from .change_delivery import ChangeDelivery
    from .catalogue import views as catalogue
    from .jobs import api as jobs_api
    from .jobs import cli as jobs_cli
    from .jobs.queue import make_queue
    from .jobs.stall_watch import StallWatch
    from .label_votes import LabelVotes
    from .pipeline import PipelineHolder
    from .similarity import SimilarityIndex

    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.fetch_max_bytes + 1024 * 1024  # upload cap + form overhead
    app.json.sort_keys = False
    logs.configure(app)
    errors.register(app)
    db.init_app(app)
    auth.init_app(app)  # before the limiter: limits are counted per key
    ratelimits.init_app(app)
    app.extensions["pipeline"] = PipelineHolder(settings)
    app.extensions["similarity"] = SimilarityIndex(settings)
    if settings.similarity_build_at_start:  # each serving process builds its index as its models load
        app.extensions["pipeline"].on_loaded.append(lambda pipeline: app.extensions["similarity"].build_in_background(
            app.extensions["sessionmaker"], pipeline.embedding_model))
    if settings.classifier_neighbour_vote and settings.label_vote:  # every process that tags: API and workers
        app.extensions["label_votes"] = LabelVotes(app.extensions["sessionmaker"], settings.label_vote_sync_seconds)
        app.extensions["pipeline"].on_loaded.append(app.extensions["label_votes"].attach)
    # Every process that loads the models (API and job workers) delivers the feed's webhooks.
    app.extensions["change_delivery"] = ChangeDelivery(app.extensions["sessionmaker"], settings)
    app.extensions["pipeline"].on_loaded.append(lambda _pipeline: app.extensions["change_delivery"].start())
    # Every process that loads the models also resumes stalled jobs (app/jobs/stall_watch.py).
    app.extensions["stall_watch"] = StallWatch(app)
    app.extensions["pipeline"].on_loaded.append(lambda _pipeline: app.extensions["stall_watch"].start())
    if settings.gc_freeze:  # last: after the callbacks above have made what they keep
        app.extensions["pipeline"].on_loaded.append(lambda _pipeline: gc_freeze.freeze_long_lived())
    app.register_blueprint(api.bp)
    app.register_blueprint(search_api.bp)
    app.register_blueprint(models_api.bp)
    app.register_blueprint(taxonomy_api.bp)
    app.register_blueprint(changes_api.bp)
    app.register_blueprint(subscriptions_api.bp)
    if settings.catalogue_enabled:
        catalogue.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(jobs_api.bp)
    app.extensions["job_queue"] = make_queue(app)
    cli.init_app(app)
    jobs_cli.init_app(app)
    embeddings.init_app(app)
    if settings.preload_models:
        app.extensions["pipeline"].load()
    return app
