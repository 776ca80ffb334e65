"""The order domain: decide what SumUp's answer means for an order, settle it, issue its tickets."""
