"""The dashboard's entry script (``streamlit run`` this file; ``spy-assets dashboard`` does)."""

import streamlit as st

from spy_assets.dashboard import views

st.set_page_config(
    page_title="spy-assets dashboard", page_icon=":material/monitoring:", layout="wide"
)
page = st.navigation(
    [
        st.Page(views.session_page, title="Session", url_path="session", default=True),
        st.Page(views.contract_page, title="Contract", url_path="contract"),
        st.Page(views.report_page, title="Scan report", url_path="report"),
        st.Page(views.health_page, title="Data health", url_path="health"),
    ]
)
views.sidebar()
page.run()
views.warm_up()  # after the first page is drawn, so it does not slow that one down
