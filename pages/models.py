from ui.widgets import coming_soon

coming_soon("Models", "Export and the Models page")
