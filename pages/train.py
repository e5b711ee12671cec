from ui.widgets import coming_soon

coming_soon("Train", "Training and evaluation")
