"""The local web app (gan-colorizer-app): photos, clicks that give colours, the colorization following them; Gradio
over the Colorizer API, served on 127.0.0.1 and offline."""
from gan_colorizer.app.main import main  # noqa: F401  (the console command; gradio is imported when it runs)
