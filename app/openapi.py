"""The OpenAPI 3.1 description of the API and a plain HTML page that renders it for people."""
from __future__ import annotations

import html
import json

from .changes import CHANGE_TYPES
from .errors import CODES
from .models import JOB_STATES

PROBLEM = {"description": "application/problem+json with a stable `code`",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
TASK_FILTERS = ["gender", "masterCategory", "subCategory", "articleType", "usage", "season", "colour"]
LABELLED = {"name": "labelled", "in": "query", "schema": {"type": "boolean"},
            "description": "true: items a person labelled (PUT /v1/items/{id}/labels); false: items nobody has"}
TASK_FILTER_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string"},
     "description": "a label as /v1/taxonomy lists it, any case; an unknown one is 422 unknown_label"
                    if name != "colour" else "baseColour or the dominant colour's name, any case"}
    for name in TASK_FILTERS]
CONFIDENCE_FILTERS = [
    {"name": "min_confidence", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1},
     "description": "items whose tag (of each task filtered, else articleType) is at least this sure; "
                    "GET /v1/models says how often such tags are right (held_out.confidence)"},
    {"name": "max_confidence", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1},
     "description": "items whose tag is less sure than this (above min_confidence): with labelled=false, "
                    "the tags a person should check"}]
SEARCH_FILTERS = [
    *TASK_FILTER_PARAMETERS,
    *CONFIDENCE_FILTERS,
    {"name": "kind", "in": "query", "schema": {"enum": ["product", "garment"]}},
    LABELLED]


def spec() -> dict:
    analysis = {"$ref": "#/components/schemas/Analysis"}
    job = {"$ref": "#/components/schemas/Job"}
    subscription = {"$ref": "#/components/schemas/Subscription"}
    deleted = {"description": "what was deleted and what was kept",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deleted"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "fashion-tagger", "version": "1.0.0",
                 "description": "Detects garments in product photos and tags each one."},
        # Keyless unless API_KEYS_REQUIRED is on (the empty requirement); then a key by either header.
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/analyses": {"post": {
                "summary": "Analyse an image by URL or upload",
                "requestBody": {"content": {
                    "application/json": {"schema": {"type": "object", "required": ["image_url"], "properties": {
                        "image_url": {"type": "string", "format": "uri"}, "refresh": {"type": "boolean"}}}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP, AVIF, HEIC/HEIF, GIF, BMP or TIFF (IMAGE_FORMATS); a colour profile is applied (to sRGB)"}, "refresh": {"type": "boolean"}}}}}},
                "responses": {"201": {"description": "analysed and stored", "content": {"application/json": {"schema": analysis}}},
                              "200": {"description": "already analysed with these model bundles",
                                      "content": {"application/json": {"schema": analysis}}},
                              **{str(status): PROBLEM for status in sorted({s for s, _ in CODES.values()}) if status != 404}}}},
            "/v1/analyses/{id}": {"get": {"summary": "One analysis", "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the analysis", "content": {"application/json": {"schema": analysis}}},
                              "404": PROBLEM}}},
            "/v1/images": {"get": {"summary": "Latest analysis of a URL", "parameters": [
                {"name": "url", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the analysis", "content": {"application/json": {"schema": analysis}}},
                              "404": PROBLEM}},
                "delete": {"summary": "Forget a URL: the images fetched from it that no other URL refers to are deleted "
                                      "with everything stored about them; the others keep their analyses",
                           "parameters": [{"name": "url", "in": "query", "required": True, "schema": {"type": "string"}}],
                           "responses": {"200": deleted, "400": PROBLEM, "404": PROBLEM, "503": PROBLEM}}},
            "/v1/images/{id}": {"get": {
                "summary": "An image: the URLs it was fetched from (latest first) and its analyses (newest first, the current one marked)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the image", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "id": {"type": "integer"}, "sha256": {"type": "string"}, "width": {"type": "integer"},
                        "height": {"type": "integer"}, "created_at": {"type": "string"},
                        "urls": {"type": "array", "items": {"type": "object"}},
                        "analyses": {"type": "array", "items": {"type": "object", "properties": {
                            "id": {"type": "integer"}, "bundles": {"type": "object"},
                            "created_at": {"type": "string"}, "current": {"type": "boolean", "description":
                                "the image's newest analysis: the one listings and searches read"}}}}}}}}},
                              "404": PROBLEM}},
                "delete": {
                "summary": "Delete an image and everything stored about it: source URLs, every analysis, their items "
                           "and embeddings, its thumbnail",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"},
                                "description": "the image id (`image.id` of an analysis or a listed item)"}],
                "responses": {"200": deleted, "404": PROBLEM, "503": PROBLEM}}},
            "/v1/items": {"get": {"summary": "Catalogue query over tagged items (keyset pagination)", "parameters": [
                *TASK_FILTER_PARAMETERS, *CONFIDENCE_FILTERS,
                {"name": "kind", "in": "query", "schema": {"enum": ["product", "garment"]}}, LABELLED,
                {"name": "analyses", "in": "query", "schema": {"enum": ["current", "all"], "default": "current"},
                 "description": "current: items of each image's newest analysis (what the service says about it now); "
                                "all: also those of the analyses earlier model bundles made"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "a page of items and next_cursor"}, "400": PROBLEM,
                              "422": PROBLEM}}},
            "/v1/items/{id}": {"get": {
                "summary": "One stored item as /v1/items lists it, with `current`: whether its analysis is its "
                           "image's current one (listings and searches read only those)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the item",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
                              "404": PROBLEM}}},
            "/v1/items/{id}/labels": {
                "put": {
                    "summary": "A person's labels for an item (replacing any it had): the item's tags from now on "
                               "(confidence 1.0; the model's are kept), carried to new analyses of its image, and "
                               "rows of every worker's neighbour vote",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/LabelsGiven"}}}},
                    "responses": {"200": {"description": "the item as /v1/items lists it, with `labels`",
                                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
                                  "400": PROBLEM, "404": PROBLEM, "422": PROBLEM, "503": PROBLEM}},
                "delete": {
                    "summary": "Withdraw the item's labels: its tags are the model's again",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "the item as /v1/items lists it",
                                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
                                  "404": PROBLEM, "503": PROBLEM}}},
            "/v1/items/{id}/similar": {"get": {
                "summary": "More like this: the stored items most similar to an item (the /v1/items filters apply)",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "same_image", "in": "query", "schema": {"type": "boolean", "default": False},
                     "description": "include the other items of the query item's own image"},
                    *SEARCH_FILTERS],
                "responses": {"200": {"description": "the item and its neighbours, best first",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Similar"}}}},
                              "400": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM}}},
            "/v1/search": {"post": {
                "summary": "Search by photo (URL or upload): the stored items most similar to the whole image and to each "
                           "garment found in it. Stores nothing unless store=true",
                "parameters": [
                    {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    {"name": "garments", "in": "query", "schema": {"type": "boolean", "default": True},
                     "description": "also search with each detected garment (false: the whole image only)"},
                    *SEARCH_FILTERS],
                "requestBody": {"content": {
                    "application/json": {"schema": {"type": "object", "required": ["image_url"], "properties": {
                        "image_url": {"type": "string", "format": "uri"}, "store": {"type": "boolean", "default": False}}}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "image": {"type": "string", "format": "binary"}, "store": {"type": "boolean"}}}}}},
                "responses": {"200": {"description": "one result list per query item", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "analysis_id": {"type": ["integer", "null"]}, "stored": {"type": "boolean"},
                        "model": {"type": "string"}, "timings_ms": {"type": "object"},
                        "queries": {"type": "array", "items": {"type": "object", "properties": {
                            "item": {"$ref": "#/components/schemas/Item"},
                            "search": {"$ref": "#/components/schemas/SearchInfo"},
                            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}}}}}}}}},
                              **{str(status): PROBLEM for status in sorted({s for s, _ in CODES.values()}) if status not in (404, 409)}}}},
            "/v1/models": {"get": {
                "summary": "The model bundles that tag the images: the versions analyses record, the serving options, "
                           "and each bundle's held-out figures (with 95% intervals) from its manifest",
                "parameters": [{"name": "per_label", "in": "query", "schema": {"type": "boolean", "default": False},
                                "description": "add classifier.held_out.per_label: each catalogue class's precision, "
                                               "recall, support and predicted count per task, and each photo kind's "
                                               "figures per source label (null when the bundle's evaluation is not "
                                               "the one its manifest's figures came from)"}],
                "responses": {"200": {"description": "bundles, classifier, detector, detector_prior, garment_crop, "
                                                     "garment_context, garment_fragments, product_garment, labelled_vote_rows",
                                      "content": {"application/json": {"schema": {"type": "object", "properties": {
                                          "bundles": {"type": "object"}, "classifier": {"type": "object"},
                                          "detector": {"type": "object", "description":
                                              "name, version (+bfloat16 when its backbone runs in bfloat16), classes, "
                                              "compute_dtype (what DETECTOR_COMPUTE_DTYPE=auto became on this "
                                              "machine), held_out figures"},
                                          "detector_prior": {"type": ["string", "null"]},
                                          "garment_crop": {"type": "string"},
                                          "garment_context": {"type": ["string", "null"], "description":
                                              "how a garment's category is pooled with its whole image's, and on "
                                              "which kinds of image (null: never)"},
                                          "garment_fragments": {"type": ["string", "null"], "description":
                                              "the share of a garment's box inside a larger garment's above which "
                                              "it is dropped as a fragment of it, and on which kinds of image "
                                              "(null: every detection is reported)"},
                                          "product_garment": {"type": ["string", "null"], "description":
                                              "how an image's own category is pooled with its one garment's, and "
                                              "on which kinds of image (null: never)"},
                                          "labelled_vote_rows": {"type": ["integer", "null"], "description":
                                              "items people labelled that this worker's neighbour vote holds "
                                              "(null: labels do not vote here)"}}}}}},
                              "400": PROBLEM, "503": PROBLEM}}},
            "/v1/taxonomy": {"get": {
                "summary": "Every tag the serving classifier can give: the labels of each task (what /v1/items filters "
                           "and PUT /v1/items/{id}/labels take), the category paths it decodes to, with how many "
                           "training images each labels, and the articleTypes each detector class allows",
                "responses": {"200": {"description": "the serving classifier's taxonomy",
                                      "content": {"application/json": {"schema": {"type": "object", "properties": {
                                          "classifier": {"type": "object"},
                                          "tasks": {"type": "object", "description": "category and style: task -> labels"},
                                          "paths": {"type": "array", "items": {"type": "object", "properties": {
                                              "masterCategory": {"type": "string"}, "subCategory": {"type": "string"},
                                              "articleType": {"type": "string"},
                                              "training_images": {"type": "integer"}}}},
                                          "garment_classes": {"type": ["object", "null"], "description":
                                              "detector class -> articleTypes its garments can get (null: any); "
                                              "null when GARMENT_DETECTOR_PRIOR is off"}}}}}},
                              "503": PROBLEM}}},
            "/v1/changes": {"get": {
                "summary": "The changes feed: every analysis stored, item labelled or unlabelled, analysis shown at "
                           "another URL and image deleted, oldest first, for clients that keep a copy of the tags",
                "parameters": [
                    {"name": "cursor", "in": "query", "schema": {"type": "string"},
                     "description": "next_cursor of the page before; none: from the first entry"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
                    {"name": "expand", "in": "query", "schema": {"type": "boolean", "default": True},
                     "description": "each entry carries the current state of what it names (`analysis`, `item`; "
                                    "null once it is gone); false: ids only"},
                    {"name": "from", "in": "query", "schema": {"type": "string", "enum": ["now"]},
                     "description": "no entries, and a cursor after every entry there is now"}],
                "responses": {"200": {"description": "a page of entries",
                                      "content": {"application/json": {"schema": {"type": "object", "properties": {
                                          "changes": {"type": "array", "items": {"type": "object", "properties": {
                                              "id": {"type": "integer"},
                                              "type": {"type": "string", "enum": list(CHANGE_TYPES)},
                                              "at": {"type": "string", "format": "date-time"},
                                              "image_id": {"type": "integer"},
                                              "analysis_id": {"type": "integer"}, "item_id": {"type": "integer"},
                                              "replaces": {"type": "array", "items": {"type": "integer"}},
                                              "supersedes": {"type": ["integer", "null"], "description":
                                                  "the image's analysis that was current until this one "
                                                  "(kept, no longer listed by /v1/items)"},
                                              "analyses": {"type": "array", "items": {"type": "integer"}},
                                              "analysis": {"type": ["object", "null"]},
                                              "item": {"type": ["object", "null"]}}}},
                                          "next_cursor": {"type": "string"},
                                          "caught_up": {"type": "boolean", "description":
                                              "this page reached the last entry there is now: poll again later"}}}}}},
                              "400": PROBLEM, "401": PROBLEM, "410": PROBLEM, "429": PROBLEM}}},
            "/v1/subscriptions": {
                "post": {"summary": "A webhook for the changes feed: its entries (of `types`) POSTed to callback_url, signed "
                                    "as job webhooks, at least once and in order; retried with a growing wait",
                         "requestBody": {"content": {"application/json": {"schema": {
                             "type": "object", "required": ["callback_url"], "properties": {
                                 "callback_url": {"type": "string", "format": "uri"},
                                 "types": {"type": "array", "items": {"type": "string", "enum": list(CHANGE_TYPES)},
                                           "description": "the entries to POST (default: all)"},
                                 "from": {"type": "string", "enum": ["now", "start"], "default": "now",
                                          "description": "now: entries after the subscription; start: every entry"}}}}}},
                         "responses": {"201": {"description": "the subscription; `Location` is its URL",
                                               "content": {"application/json": {"schema": subscription}}},
                                       "400": PROBLEM, "401": PROBLEM, "410": PROBLEM, "422": PROBLEM, "429": PROBLEM}},
                "get": {"summary": "Every subscription, oldest first",
                        "responses": {"200": {"description": "subscriptions", "content": {"application/json": {"schema": {
                            "type": "object", "properties": {"subscriptions": {"type": "array", "items": subscription}}}}}},
                            "401": PROBLEM, "429": PROBLEM}}},
            "/v1/subscriptions/{id}": {
                "get": {"summary": "A subscription's delivery state", "parameters": [
                            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                        "responses": {"200": {"description": "the subscription",
                                              "content": {"application/json": {"schema": subscription}}},
                                      "401": PROBLEM, "404": PROBLEM, "429": PROBLEM}},
                "delete": {"summary": "Stop delivering", "parameters": [
                               {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                           "responses": {"200": {"description": "the subscription as it was",
                                                 "content": {"application/json": {"schema": subscription}}},
                                         "401": PROBLEM, "404": PROBLEM, "429": PROBLEM}}},
            "/v1/jobs": {"post": {
                "summary": "Submit a batch of image URLs, analysed by queue workers (a job; POSTs a signed summary to "
                           "callback_url when done)",
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "required": ["image_urls"], "properties": {
                        "image_urls": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                       "description": "at most JOB_MAX_URLS (10,000 by default)"},
                        "callback_url": {"type": "string", "format": "uri"}, "refresh": {"type": "boolean"}}}}}},
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200},
                                "description": "a retry with the same key (per API key) and the same body gets the job "
                                               "the first request made (200, Idempotent-Replayed: true), not a second "
                                               "one; the key with another body is 422 idempotency_key_reused"}],
                "responses": {"202": {"description": "stored and enqueued: the job's summary; `Location` is its URL",
                                      "content": {"application/json": {"schema": job}}},
                              "200": {"description": "the job an earlier request with the same Idempotency-Key made",
                                      "content": {"application/json": {"schema": job}}},
                              "400": PROBLEM, "401": PROBLEM, "422": PROBLEM, "429": PROBLEM, "503": PROBLEM}},
                "get": {
                    "summary": "Jobs, newest first, each with its summary",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(JOB_STATES)}},
                        {"name": "mine", "in": "query", "schema": {"type": "boolean", "default": False},
                         "description": "only the jobs of the API key asking"},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the page before"}],
                    "responses": {"200": {"description": "a page of jobs",
                                          "content": {"application/json": {"schema": {"type": "object", "properties": {
                                              "jobs": {"type": "array", "items": job},
                                              "next_cursor": {"type": ["string", "null"]}}}}}},
                                  "400": PROBLEM, "401": PROBLEM, "429": PROBLEM}}},
            "/v1/jobs/{id}": {
                "get": {"summary": "A job's state, counts, progress and per-URL outcomes (paged by `after`)",
                        "parameters": [
                            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                            {"name": "after", "in": "query", "schema": {"type": "integer", "default": -1},
                             "description": "outcomes after this position (`next_after` of the previous page)"},
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                                       "default": 100}}],
                        "responses": {"200": {"description": "the job and a page of outcomes",
                                              "content": {"application/json": {"schema": job}}},
                                      "400": PROBLEM, "404": PROBLEM}},
                "delete": {"summary": "Cancel a job: URLs not yet started are cancelled",
                           "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                           "responses": {"200": {"description": "the job's summary",
                                                 "content": {"application/json": {"schema": job}}},
                                         "404": PROBLEM}}},
            "/v1/jobs/{id}/results": {"get": {
                "summary": "Every URL's outcome with the analysis it produced, in submission order, streamed (also "
                           "while the job runs: open URLs have no analysis yet). NDJSON: the outcome as the job "
                           "lists it plus `analysis` as GET /v1/analyses/{id} gives it; CSV: the whole image's "
                           "tags and confidences, and the garments' articleTypes",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "format", "in": "query", "schema": {"enum": ["ndjson", "csv"],
                                                                            "default": "ndjson"}}],
                "responses": {"200": {"description": "one line (row) per URL",
                                      "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                                  "text/csv": {"schema": {"type": "string"}}}},
                              "400": PROBLEM, "404": PROBLEM}}},
            "/healthz": {"get": {"summary": "Process alive", "security": [],
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Database (and broker) reachable, models loaded", "security": [],
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not ready: `unavailable` names what is down"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{}, {"metricsToken": []}],
                                 "responses": {"200": {"description": "text format"}, "401": PROBLEM}}},
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key: Authorization: Bearer <key>"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when set"},
        }, "schemas": {
            "Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"enum": sorted(CODES)}}},
            "Tag": {"type": "object", "properties": {"label": {"type": "string"}, "confidence": {"type": "number"},
                                                     "top3": {"type": "array"}}},
            "Item": {"type": "object", "properties": {
                "kind": {"enum": ["product", "garment"]}, "box": {"type": ["array", "null"]},
                "mask": {"type": ["object", "null"], "description": "COCO RLE {size: [h, w], counts}"},
                "detector": {"type": ["object", "null"]},
                "category": {"type": "object", "properties": {"constrained_by": {
                    "type": ["string", "null"],
                    "description": "what besides the garment's crop steered its category: detector:<class> when "
                                   "the detector's class constrained the path (GARMENT_DETECTOR_PRIOR; confidences "
                                   "and top3 stay the classifier's own), image when it was read with its whole "
                                   "image (GARMENT_CONTEXT; confidences and top3 are the pooled ones), for a "
                                   "product item garment when it was read with the image's one garment "
                                   "(PRODUCT_GARMENT; pooled the same way), joined by +"}}},
                "style": {"type": "object"},
                "colours": {"type": "array", "items": {"type": "object", "properties": {
                    "hex": {"type": "string"}, "name": {"type": "string"}, "share": {"type": "number"}}}},
                "labels": {"type": ["object", "null"], "description": "a person's labels, which the tags show "
                           "(PUT /v1/items/{id}/labels): `tags` (task -> label, with the category levels they imply), "
                           "`model` (the model's tags they replaced: task -> {label, confidence}), `updated_at`"}}},
            "LabelsGiven": {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                task: {"type": "string"} for task in ("gender", "masterCategory", "subCategory", "articleType",
                                                      "baseColour", "season", "usage")},
                "example": {"articleType": "Flats", "gender": "Women"}},
            "SearchInfo": {"type": "object", "properties": {
                "method": {"enum": ["index", "index+filter", "exact-subset"]}, "index": {"enum": ["exact", "ivf"]},
                "index_size": {"type": "integer"},
                "query_expansion": {"type": "integer", "description": "how many stored items expanded the query "
                                    "before the search that ranked the results (SIMILARITY_QUERY_EXPANSION; 0: none)"}}},
            "Hit": {"type": "object", "properties": {
                "score": {"type": "number", "description": "cosine similarity of the item's embedding to the query's "
                                                     "(expanded by its nearest items, see SearchInfo), -1..1"},
                "item": {"$ref": "#/components/schemas/Item"}}},
            "Similar": {"type": "object", "properties": {
                "item": {"$ref": "#/components/schemas/Item"}, "model": {"type": "string"},
                "search": {"$ref": "#/components/schemas/SearchInfo"},
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}}},
            "Subscription": {"type": "object", "properties": {
                "id": {"type": "integer"}, "callback_url": {"type": "string"},
                "types": {"type": ["array", "null"], "items": {"type": "string"}},
                "state": {"enum": ["active", "failing"], "description": "failing: the last WEBHOOK_MAX_ATTEMPTS POSTs or "
                                                                        "more failed; it goes on retrying"},
                "cursor": {"type": "string", "description": "the feed position after the last acknowledged entry"},
                "delivered": {"type": "integer"}, "delivered_at": {"type": ["string", "null"]},
                "failures": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
                "next_attempt_at": {"type": ["string", "null"]}, "created_at": {"type": "string"}}},
            "Job": {"type": "object", "properties": {
                "id": {"type": "string"}, "state": {"enum": ["queued", "running", "done", "cancelled"]},
                "total": {"type": "integer"},
                "counts": {"type": "object", "description": "URLs per outcome: queued, running, done, failed, skipped, "
                                                            "cancelled"},
                "progress": {"type": "number", "description": "share of the URLs finished, 0..1"},
                "errors": {"type": "object", "description": "failed URLs per error code"},
                "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]}, "elapsed_s": {"type": "number"},
                "callback": {"type": ["object", "null"], "description": "url, state (delivered, failed), attempts"},
                "results_url": {"type": "string", "description": "every URL's outcome and analysis in one download"},
                "outcomes": {"type": "array", "description": "GET only: per URL its position, url, state, analysis_id "
                                                             "(null once the image is deleted), error {code, detail}, attempts"},
                "next_after": {"type": ["integer", "null"], "description": "GET only"}}},
            "Deleted": {"type": "object", "properties": {
                "url": {"type": "string", "description": "the forgotten URL (DELETE /v1/images?url= only)"},
                "deleted_images": {"type": "array", "items": {"type": "object", "properties": {
                    "image_id": {"type": "integer"}, "sha256": {"type": "string"},
                    "analyses": {"type": "integer"}, "items": {"type": "integer"}}}},
                "kept_images": {"type": "array", "items": {"type": "object", "properties": {
                    "image_id": {"type": "integer"},
                    "other_urls": {"type": "integer", "description": "URLs that still refer to the image"}}}}}},
            "Analysis": {"type": "object", "properties": {
                "id": {"type": "integer"}, "image": {"type": "object"}, "bundles": {"type": "object"},
                "timings_ms": {"type": "object"}, "created_at": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}}},
        }},
    }


def _docs_page() -> str:
    rows = []
    for path, methods in spec()["paths"].items():
        for method, operation in methods.items():
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(operation['summary'])}</td></tr>")
    codes = "".join(f"<tr><td><code>{c}</code></td><td>{s}</td><td>{html.escape(t)}</td></tr>" for c, (s, t) in CODES.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fashion-tagger API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.2em .8em}"
        "pre{background:#f4f4f4;padding:1em}</style></head><body><h1>fashion-tagger API</h1>"
        "<p>Machine-readable description: <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<h2>Endpoints</h2><table>{''.join(rows)}</table>"
        "<h2>Example</h2><pre>curl -s -X POST localhost:8000/v1/analyses -H 'Content-Type: application/json' "
        "-d '{\"image_url\": \"https://example.com/shirt.jpg\"}'</pre>"
        f"<h2>Error codes</h2><table>{codes}</table>"
        f"<script type='application/json' id='openapi'>{html.escape(json.dumps(spec()))}</script></body></html>")


DOCS_PAGE = _docs_page()
