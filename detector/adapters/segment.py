"""Segment "Experiment Viewed" track events -> `Assignment`.

Segment's A/B-testing spec (https://segment.com/docs/connections/spec/ab-testing/) names the
event `Experiment Viewed` with properties `experiment_id`, `experiment_name`, `variation_id`,
`variation_name`. Mapping:

| Assignment  | Segment                                                                 |
|-------------|-------------------------------------------------------------------------|
| experiment  | properties.experiment_id, else properties.experiment_name               |
| variant     | properties.variation_name, else properties.variation_id                 |
| user_id     | userId, else anonymousId (attribute `identity` says which)              |
| enrolled    | true (viewing the experiment is the exposure)                           |
| ts          | timestamp, else originalTimestamp, sentAt, receivedAt, else record time |
| attributes  | country (context.location.country), platform (context.device.type, else |
|             | context.os.name lowercased), locale, app_version, then scalar properties |

Register experiments under the key the events carry (`experiment_id`): GrowthBook and
Optimizely send their experiment key there. Other Segment events on the same topic
(`Order Completed`, `identify`, ...) are `Rejected` with kind `not_exposure`: the
ingest path should count them and skip them, not dead-letter them.
"""

from __future__ import annotations

from detector.events import Assignment, Rejected

from ._common import Reject, assignment, load_object, rejected, scalar_attributes, text, timestamp_ms

EVENT = "Experiment Viewed"
_KNOWN = {"experiment_id", "experiment_name", "variation_id", "variation_name"}


def decode_segment(value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected:
    """Decode one Segment message. Never raises."""
    try:
        return _decode(load_object(value, "Segment event"), record_ts_ms)
    except Reject as exc:
        return rejected(exc, value)


def _decode(doc: dict, record_ts_ms: int) -> Assignment:
    kind = doc.get("type")
    if kind is not None and kind != "track":
        raise Reject(f"Segment {kind!r} message, not an {EVENT!r} track event", "not_exposure")
    event = doc.get("event")
    if not isinstance(event, str) or event.strip().lower() != EVENT.lower():
        raise Reject(f"Segment track event {str(event)[:60]!r}, not {EVENT!r}", "not_exposure")
    props = doc.get("properties")
    if not isinstance(props, dict):
        raise Reject(f"{EVENT}: properties must be an object with experiment_id and variation_id")
    experiment = text(props.get("experiment_id"), "properties.experiment_id") or text(
        props.get("experiment_name"), "properties.experiment_name")
    if experiment is None:
        raise Reject(f"{EVENT}: missing properties.experiment_id (and experiment_name)")
    variant = text(props.get("variation_name"), "properties.variation_name") or text(
        props.get("variation_id"), "properties.variation_id")
    user = text(doc.get("userId"), "userId")
    identity = "user"
    if user is None:
        user = text(doc.get("anonymousId"), "anonymousId")
        identity = "anonymous"
    if user is None:
        raise Reject(f"{EVENT}: neither userId nor anonymousId")
    ts = None
    for f in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        if doc.get(f) is not None:
            ts = timestamp_ms(doc[f], f, record_ts_ms)
            break
    if ts is None:
        ts = record_ts_ms
    ctx = doc.get("context") if isinstance(doc.get("context"), dict) else {}
    attrs: dict[str, str] = {"identity": identity}
    loc = ctx.get("location") if isinstance(ctx.get("location"), dict) else {}
    device = ctx.get("device") if isinstance(ctx.get("device"), dict) else {}
    os_ = ctx.get("os") if isinstance(ctx.get("os"), dict) else {}
    app = ctx.get("app") if isinstance(ctx.get("app"), dict) else {}
    platform = device.get("type") or (str(os_["name"]).lower() if os_.get("name") else None)
    scalar_attributes([("country", loc.get("country")), ("platform", platform), ("locale", ctx.get("locale")),
                       ("app_version", app.get("version"))], attrs)
    scalar_attributes(((k, v) for k, v in sorted(props.items()) if k not in _KNOWN), attrs)
    return assignment(experiment, user, variant, True, ts, attrs)
