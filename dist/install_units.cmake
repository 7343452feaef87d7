# install(SCRIPT) of dist/CMakeLists.txt: the systemd units with the install prefix's bin.
foreach(unit roam-server@.service roam-client@.service)
  file(READ "${ROAMSTACK_UNIT_SOURCE}/${unit}" text)
  string(REPLACE "/usr/local/bin/" "${CMAKE_INSTALL_PREFIX}/bin/" text "${text}")
  set(destination "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
  file(MAKE_DIRECTORY "${destination}")
  file(WRITE "${destination}/${unit}" "${text}")
  message(STATUS "Installing: ${destination}/${unit}")
endforeach()
