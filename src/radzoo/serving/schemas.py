"""Request and response models of the HTTP API (pydantic; they also feed the OpenAPI page).

``/v1/embeddings`` follows OpenAI's embeddings shape so existing clients work unchanged, with
images (base64 or data URLs of DICOM/PNG/JPEG) in place of, or beside, text; it also takes
Infinity's ``modality`` and OpenAI-chat / vLLM ``image_url`` items (see
:mod:`radzoo.serving.request_items`). radzoo adds ``output`` (a named model output), ``errors``
(per-item failures) and ``random_weights``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from radzoo.errors import InputError


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    input: list[str | dict[str, Any]] | str = Field(
        description="one item or a list: images as base64 strings or data URLs (data:image/png;base64,...) of "
        "DICOM, PNG or JPEG files (http(s) URLs only for allow-listed hosts), texts when input_type/modality is "
        "'text', or typed items {'type': 'text', 'text': ...} / {'type': 'image_url', 'image_url': {'url': ...}}"
    )
    model: str | None = Field(default=None, description="model name (GET /models); default: the server's default model")
    input_type: Literal["image", "text"] | None = Field(
        default=None, description="what plain strings in input are (default image); text: image-text models only"
    )
    modality: Literal["image", "text"] | None = Field(default=None, description="Infinity's name for input_type")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="'float': JSON numbers; 'base64': little-endian float32 bytes, base64-encoded"
    )
    output: str | None = Field(default=None, description="named model output (default: the model's default output)")
    user: str | None = Field(default=None, description="accepted for OpenAI compatibility; ignored and never logged")


class ZeroShotRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: list[str] | str = Field(description="one image or a list: base64 strings or data URLs (DICOM, PNG, JPEG)")
    model: str | None = Field(default=None, description="an image-text model (PRIOR, LoVT)")
    labels: list[str] | None = Field(default=None, description="labels to score (default: the model's prompt set)")
    prompts: Any = Field(default=None, description="prompt set name or {label: [prompt, ...]} (see radzoo.zeroshot)")
    mode: Literal["single-label", "multi-label"] | None = Field(
        default=None, description="single-label: softmax over labels; multi-label: each label positive vs negative"
    )


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: list[str] | str = Field(description="one image or a list: base64 strings or data URLs (DICOM, PNG, JPEG)")
    head: str | None = Field(default=None, description="a served task head (GET /models 'heads'); default: the only one")
    operating_point: Literal["sens90", "sens95", "spec90", "youden"] | None = Field(
        default=None, description="which stored threshold makes the decisions (default youden)")


class GroundRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = Field(description="one image: base64 string or data URL (DICOM, PNG, JPEG)")
    text: str = Field(description="the finding to localise, e.g. 'pleural effusion'")
    model: str | None = Field(default=None, description="an image-text model (PRIOR, LoVT)")
    response_format: Literal["png", "json"] = Field(
        default="png", description="png: overlay image; json: the raw map on the model's feature grid"
    )


class DisplayRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = Field(description="one image: base64 string or data URL (DICOM, PNG, JPEG)")
    max_side: int = Field(default=1024, ge=64, le=4096, description="longest side of the PNG returned, in pixels")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: list[str] | str | None = Field(
        default=None, description="query image(s): base64 strings or data URLs (DICOM, PNG, JPEG)")
    text: list[str] | str | None = Field(
        default=None, description="query text(s); indexes of joint image-text models (PRIOR, LoVT) only")
    uid: list[str] | str | None = Field(
        default=None, description="SOP Instance UID(s) of indexed images, as the extraction stored them")
    k: int = Field(default=10, description="neighbours per query, 1..1000")
    filters: dict[str, str | list[str]] | None = Field(
        default=None, description="field -> value(s): modality, view_position (view), study_date (YYYYMMDD or "
        "FROM..TO), patient_key, source, study_instance_uid, series_instance_uid")
    exclude_same_patient: bool = Field(default=False, description="leave out the query patient's images")
    thumbnails: bool = Field(default=False, description="PNG thumbnails of hits whose source this server can read")


class ZeroShotItem(BaseModel):
    index: int
    probabilities: dict[str, float]
    prediction: Any


class ZeroShotResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    labels: list[str]
    rule: str = Field(description="the scoring rule (e.g. PRIOR's global+local prompt score)")
    mode: str
    prompt_set: str
    data: list[ZeroShotItem]
    errors: list[dict[str, Any]] = Field(default_factory=list)
    random_weights: bool


class ClassifyItem(BaseModel):
    index: int
    predictions: dict[str, Any] = Field(description="label -> {probability (calibrated), decision, threshold}")


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    head: dict[str, Any] = Field(description="the head's name, digest, labels and base model identity")
    model: str
    labels: list[str]
    operating_point: str
    thresholds: dict[str, float]
    data: list[ClassifyItem]
    errors: list[dict[str, Any]] = Field(default_factory=list)
    random_weights: bool
    runtime: str
    precision: str = Field(description="what the base model computed in (the head runs after it in float64)")


class GroundMap(BaseModel):
    """JSON answer of /ground (response_format=json); the default answer is an image/png overlay."""

    model: str
    text: str
    method: str
    grid: list[list[float]]
    heatmap_shape: list[int]
    random_weights: bool


class ItemError(BaseModel):
    index: int
    type: str
    message: str


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    images: int = Field(description="images embedded")
    texts: int = Field(default=0, description="texts embedded")


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    output: str
    dim: int
    usage: Usage
    errors: list[ItemError] = Field(default_factory=list, description="items that failed, by input index")
    random_weights: bool = Field(description="true when the model's weights are random (tests, smoke runs)")
    runtime: str
    precision: str = Field("fp32", description="what the embeddings were computed in: fp32, bf16, fp16 or int8")


def parse_request(schema: type[BaseModel], fields: Any) -> Any:
    """``fields`` validated against ``schema``; failures become one ``InputError`` naming each field."""
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            parts.append(f"{where}: {err.get('msg')}")
        raise InputError("invalid request: " + "; ".join(parts)) from None


def _loose(schema: type[BaseModel], name: str) -> type[BaseModel]:
    """The wire model: ``schema``'s fields typed ``Any``, so BentoML accepts any JSON and validation
    happens in :func:`parse_request` with radzoo's error shape (the schema stays the documentation)."""
    fields = {k: (Any, Field(default=None if f.is_required() else f.default, description=f.description))
              for k, f in schema.model_fields.items()}
    return create_model(name, **fields)


EmbeddingsInput = _loose(EmbeddingsRequest, "EmbeddingsInput")
ZeroShotInput = _loose(ZeroShotRequest, "ZeroShotInput")
GroundInput = _loose(GroundRequest, "GroundInput")
ClassifyInput = _loose(ClassifyRequest, "ClassifyInput")
DisplayInput = _loose(DisplayRequest, "DisplayInput")
SearchInput = _loose(SearchRequest, "SearchInput")
