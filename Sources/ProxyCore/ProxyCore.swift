// ProxyCore: see DESIGN
