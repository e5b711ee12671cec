from ui.widgets import coming_soon

coming_soon("Analytics", "Prediction log and Analytics page")
