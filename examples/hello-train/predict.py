from pathlib import Path
from typing import Optional

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self, weights: Optional[str] = None) -> None:
        """`weights` is COG_WEIGHTS: the trained weights file of a fine-tuned version, else None."""
        self.prefix = Path(weights).read_text() if weights else "hello"

    def predict(self, text: str = Input(description="Who or what to greet")) -> str:
        return f"{self.prefix} {text}"
