"""Typed results of the common analysis kinds (the audio-analysis agent's outputs).

``analysis.recorded`` carries results as JSON; for the kinds named here the JSON must
match the model (unknown fields are refused, so a typo does not pass silently). Any
other analysis type takes free JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

Unit = Annotated[float, Field(ge=0, le=1)]


class _Results(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AudioAnalysisResults(_Results):
    """Tempo, key, time signature and named features of a recording."""

    tempo_bpm: Annotated[float, Field(gt=0, le=1000)] | None = None
    key: Annotated[str, Field(pattern=r"^[A-G][#b]?( ?(major|minor|maj|min|m))?$")] | None = None
    time_signature: Annotated[str, Field(pattern=r"^[1-9][0-9]?/(1|2|4|8|16|32)$")] | None = None
    duration_seconds: Annotated[float, Field(ge=0)] | None = None
    features: dict[str, float | list[float] | str] = Field(default_factory=dict)
    confidence: Unit | None = None


class PerformanceAnalysisResults(_Results):
    """How a take compares with what was intended: accuracies are 0..1, the score 0..100."""

    pitch_accuracy: Unit | None = None
    rhythm_accuracy: Unit | None = None
    dynamics_range_db: Annotated[float, Field(ge=0, le=200)] | None = None
    overall_score: Annotated[float, Field(ge=0, le=100)] | None = None
    feedback: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=100
    )


class NoteEvent(_Results):
    """One transcribed note; times in seconds, MIDI pitch and velocity."""

    start: Annotated[float, Field(ge=0)]
    end: Annotated[float, Field(ge=0)]
    pitch: Annotated[int, Field(ge=0, le=127)]
    velocity: Annotated[int, Field(ge=0, le=127)]
    confidence: Unit = 1.0

    @model_validator(mode="after")
    def _ends_after_start(self) -> NoteEvent:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class TranscriptionResults(_Results):
    notes: list[NoteEvent] = Field(max_length=100_000)


RESULT_MODELS: Final[dict[str, type[_Results]]] = {
    "audio_analysis": AudioAnalysisResults,
    "performance_analysis": PerformanceAnalysisResults,
    "transcription": TranscriptionResults,
}


def check_results(analysis_type: str, results: dict[str, Any]) -> dict[str, Any]:
    """Results of a typed kind validated (pydantic ValidationError otherwise) and
    brought to their JSON form; other kinds unchanged."""
    model = RESULT_MODELS.get(analysis_type)
    if model is None:
        return results
    return model.model_validate(results).model_dump(mode="json", exclude_unset=True)
