// StandInServer
