//! pacman_conf
