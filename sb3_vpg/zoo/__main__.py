from sb3_vpg.zoo import main

main()
