# Source me: the venv, the colcon install, and DDS confined to loopback.
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$_here/.venv/bin/activate"
if [ -f "$_here/install/setup.bash" ]; then
  source "$_here/install/setup.bash"
fi
# the sources come first, so new modules need no rebuild; pointmoe_ros.msg still resolves to
# the install tree through the package's extend_path
export PYTHONPATH="$_here${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTRTPS_DEFAULT_PROFILES_FILE="$_here/config/fastdds_loopback.xml"
export FASTDDS_DEFAULT_PROFILES_FILE="$_here/config/fastdds_loopback.xml"
unset _here
