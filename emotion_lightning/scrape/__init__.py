"""Web image scraping per emotion (icrawler engines) with a manifest and de-duplication."""
