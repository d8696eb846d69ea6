"""Dashboard tests: page logic, the pages under Streamlit AppTest, and a real browser."""
