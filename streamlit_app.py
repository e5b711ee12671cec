"""Entry point: ``streamlit run streamlit_app.py`` (or ``make run``)."""

import pylibsrtp  # noqa: F401  (the webcam's WebRTC; loaded after TensorFlow, its OpenSSL crashes the process)
import streamlit as st

from ui.widgets import mark_routed

st.set_page_config(page_title="imgrec", page_icon=":material/image_search:", layout="wide")

pages = [
    st.Page("pages/predict.py", title="Predict", icon=":material/image_search:", default=True),
    st.Page("pages/video.py", title="Video", icon=":material/videocam:"),
    st.Page("pages/analytics.py", title="Analytics", icon=":material/monitoring:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
]
mark_routed()
st.navigation(pages).run()
