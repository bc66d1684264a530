"""Request and response models of the HTTP API (pydantic; they also feed the OpenAPI page).

``/v1/embeddings`` follows OpenAI's embeddings shape so existing clients work unchanged, with
images (base64 or data URLs of DICOM/PNG/JPEG) in place of text. radzoo adds ``output`` (a named
model output), ``errors`` (per-item failures) and ``random_weights``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    input: list[str] | str = Field(
        description="one image or a list of images: base64 strings or data URLs (data:image/png;base64,...) "
        "of DICOM, PNG or JPEG files"
    )
    model: str | None = Field(default=None, description="model name (GET /models); default: the server's default model")
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


class GroundRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = Field(description="one image: base64 string or data URL (DICOM, PNG, JPEG)")
    text: str = Field(description="the finding to localise, e.g. 'pleural effusion'")
    model: str | None = Field(default=None, description="an image-text model (PRIOR, LoVT)")
    response_format: Literal["png", "json"] = Field(
        default="png", description="png: overlay image; json: the raw map on the model's feature grid"
    )


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
