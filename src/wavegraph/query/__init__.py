"""The read side's logic over the stores (search; explain and statistics to come); no HTTP here."""
