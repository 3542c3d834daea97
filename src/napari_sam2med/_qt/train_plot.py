"""The Fine-tune dock's live plot: training loss and validation Dice against the step."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget


class TrainPlot(QWidget):
    """Matplotlib plot of the loss (left axis) and validation Dice (right axis)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.loss_axes = self.figure.add_subplot(111)
        self.dice_axes = self.loss_axes.twinx()
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.dices: list[float] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    def clear(self) -> None:
        """Forget the curves (a new run)."""
        self.steps, self.losses, self.val_steps, self.dices = [], [], [], []
        self._draw()

    def add(self, step: int, loss: float, val_dice: float | None) -> None:
        """Add one training step (and its validation Dice, when it was validated)."""
        self.steps.append(step)
        self.losses.append(loss)
        if val_dice is not None:
            self.val_steps.append(step)
            self.dices.append(val_dice)
        self._draw()

    def _draw(self) -> None:
        self.loss_axes.clear()
        self.dice_axes.clear()
        self.loss_axes.plot(self.steps, self.losses, color="tab:blue", lw=1)
        self.loss_axes.set_xlabel("step")
        self.loss_axes.set_ylabel("loss", color="tab:blue")
        self.dice_axes.plot(self.val_steps, self.dices, color="tab:orange", marker="o", ms=3)
        self.dice_axes.set_ylabel("val Dice", color="tab:orange")
        self.dice_axes.set_ylim(0, 1)
        self.canvas.draw_idle()  # coalesced: many steps per second cost one redraw per paint
